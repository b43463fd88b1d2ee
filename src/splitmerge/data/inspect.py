"""`splitmerge dataset verify|stats`: check a Dataset folder against its manifest; plot what is in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import SplitMergeError
from ..video.layers import Layers
from .manifest import CLIPS, read_manifest, read_rows
from .report import summarize


def verify(dataset: str | Path) -> list[str]:
    """Every problem found, one line each (an empty list: the dataset is sound).

    Checks: the manifest reads and agrees with the row files; every ok row's clip folder loads as Layers whose
    frame count and size match the row; every folder under clips/ belongs to an ok row (no orphans, no
    leftovers of a killed build); ids are unique.
    """
    dataset = Path(dataset)
    problems: list[str] = []
    manifest = read_manifest(dataset)
    ids = [row["id"] for row in manifest]
    if len(ids) != len(set(ids)):
        problems.append(f"{dataset}: duplicate ids in the manifest")
    rows = {row["id"]: row for row in read_rows(dataset)}
    if set(rows) != set(ids):
        problems.append(f"{dataset}: the manifest and rows/ differ by {len(set(rows) ^ set(ids))} ids "
                        "(rebuild to refresh the manifest)")
    ok = {row["id"]: row for row in manifest if row["status"] == "ok"}
    for row in ok.values():
        folder = dataset / row["clip"]
        try:
            layers = Layers.load(folder)
        except SplitMergeError as error:
            problems.append(f"{folder}: {' '.join(str(error).split())}")
            continue
        found = (layers.num_frames, *layers.frames.shape[1:3])
        expected = (row["num_frames"], row["height"], row["width"])
        if found != expected:
            problems.append(f"{folder}: {found[0]} frames at {found[2]}x{found[1]}, the manifest says "
                            f"{expected[0]} at {expected[2]}x{expected[1]}")
    clips = dataset / CLIPS
    for folder in sorted(clips.iterdir()) if clips.is_dir() else []:
        if folder.name not in ok:
            problems.append(f"{folder}: not an ok clip of the manifest (orphan or leftover)")
    return problems


def subject_speeds(layers: Layers) -> float:
    """The subject's mean centroid speed, in frame heights per second (0 when it is absent)."""
    centroids = []
    for alpha in layers.alpha:
        mass = alpha.sum()
        if mass > 0:
            ys, xs = np.indices(alpha.shape)
            centroids.append(((xs * alpha).sum() / mass, (ys * alpha).sum() / mass))
    if len(centroids) < 2:
        return 0.0
    steps = np.linalg.norm(np.diff(np.array(centroids), axis=0), axis=1)
    return float(steps.mean() * layers.fps / layers.frames.shape[1])


def stats(dataset: str | Path, output: str | Path | None = None) -> dict:
    """Statistics of a dataset (see `report.summarize`) plus subject speeds, and PNG histograms of the
    foreground ratio, the subject speed and the caption length written to `output` (default: the dataset's
    ``stats/`` folder). Returns the statistics with the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = Path(dataset)
    rows = read_manifest(dataset)
    summary = summarize(rows)
    ok = [row for row in rows if row["status"] == "ok"]
    speeds = [subject_speeds(Layers.load(dataset / row["clip"])) for row in ok]
    summary["subject_speed"] = {"mean": float(np.mean(speeds)), "max": float(np.max(speeds))} if speeds else {}
    out = Path(output) if output else dataset / "stats"
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "fg_ratio": ([row["fg_ratio"] for row in ok], "foreground ratio (mean alpha)", (0, 0.5)),
        "subject_speed": (speeds, "subject speed (frame heights per second)", None),
        "caption_words": ([len(row["caption"].split()) for row in ok], "caption length (words)", None),
    }
    pictures = {}
    for name, (values, label, bounds) in figures.items():
        figure, axes = plt.subplots(figsize=(5, 3), dpi=100)
        axes.hist(values, bins=20, range=bounds, color="#3b7dd8", edgecolor="white")
        if name == "fg_ratio":
            for edge in (0.01, 0.45):
                axes.axvline(edge, color="#c0392b", linestyle="--", linewidth=1)
        axes.set_xlabel(label)
        axes.set_ylabel("clips")
        axes.set_title(f"{label}: {len(values)} ok clips", fontsize=9)
        figure.tight_layout()
        path = out / f"{name}.png"
        figure.savefig(path)
        plt.close(figure)
        pictures[name] = str(path)
    summary["pictures"] = pictures
    (out / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
