"""`splitmerge dataset verify|stats`: check a Dataset folder against its manifest; plot what is in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..errors import SplitMergeError
from ..paths import check_output
from ..video.layers import Layers
from .export import check_replaceable
from .manifest import CLIPS, DATASET_ENTRIES, check_row, clip_files, clip_folder, read_manifest, read_rows, read_table
from .report import summarize

STATS_FILES = ("fg_ratio.png", "subject_speed.png", "caption_words.png", "stats.json")


def verify(dataset: str | Path) -> list[str]:
    """Every problem found, one line each (an empty list: the dataset is sound).

    Checks: the manifest reads (else a `SplitMergeError`: nothing else can be checked) and agrees with the row
    files; every row is sound (`manifest.check_row`: a plain id, an ok row's clip inside the dataset...); every ok
    row's clip folder holds its files (no symlink leading out) and loads as Layers whose frame count and size
    match the row; every folder under clips/ belongs to an ok row (no orphans, no leftovers of a killed build);
    ids are unique.
    """
    dataset = Path(dataset)
    problems: list[str] = []
    manifest = read_table(dataset)
    sound = []
    for number, row in enumerate(manifest, 1):
        try:
            sound.append(check_row(dataset, row, number))
        except SplitMergeError as error:
            problems.append(_one_line(error))
    ids = [row["id"] for row in manifest]
    if len(ids) != len(set(ids)):
        problems.append(f"{dataset}: duplicate ids in the manifest")
    rows = {row["id"]: row for row in read_rows(dataset)}
    if set(rows) != set(ids):
        problems.append(f"{dataset}: the manifest and rows/ differ by {len(set(rows) ^ set(ids))} ids "
                        "(rebuild to refresh the manifest)")
    for row in (row for row in sound if row["status"] == "ok"):
        problem = _clip_problem(dataset, row)
        if problem:
            problems.append(problem)
    ok = {row["id"] for row in manifest if row["status"] == "ok"}
    clips = dataset / CLIPS
    for folder in sorted(clips.iterdir()) if clips.is_dir() else []:
        if folder.name not in ok:
            problems.append(f"{folder}: not an ok clip of the manifest (orphan or leftover)")
    return problems


def _clip_problem(dataset: Path, row: dict) -> str | None:
    """What is wrong with an ok row's clip folder (its files, their shapes against the row), or None."""
    folder = clip_folder(dataset, row)
    try:
        clip_files(dataset, row)
        layers = Layers.load(folder)
    except SplitMergeError as error:  # its message names the file at fault, inside the folder or not
        message = _one_line(error)
        return message if message.startswith(str(folder)) else f"{folder}: {message}"
    found = (layers.num_frames, *layers.frames.shape[1:3])
    expected = (row["num_frames"], row["height"], row["width"])
    if found != expected:
        return (f"{folder}: {found[0]} frames at {found[2]}x{found[1]}, the manifest says "
                f"{expected[0]} at {expected[2]}x{expected[1]}")
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


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
    ``stats/`` folder, replaced whole and atomically; refused if it would land on the dataset's own files).
    Returns the statistics with the PNG paths."""
    dataset = Path(dataset)
    out = _stats_folder(dataset, output)
    rows = read_manifest(dataset)
    summary = summarize(rows)
    ok = [row for row in rows if row["status"] == "ok"]
    speeds = [subject_speeds(_load_clip(dataset, row)) for row in ok]
    summary["subject_speed"] = {"mean": float(np.mean(speeds)), "max": float(np.max(speeds))} if speeds else {}
    figures = {
        "fg_ratio": ([row["fg_ratio"] for row in ok], "foreground ratio (mean alpha)", (0, 0.5)),
        "subject_speed": (speeds, "subject speed (frame heights per second)", None),
        "caption_words": ([len(row["caption"].split()) for row in ok], "caption length (words)", None),
    }
    pictures = {}
    with atomic_dir(out) as temporary:  # all or nothing: a failure leaves no half-written folder
        for name, (values, label, bounds) in figures.items():
            _histogram(temporary / f"{name}.png", name, values, label, bounds)
            pictures[name] = str(out / f"{name}.png")
        summary["pictures"] = pictures
        (temporary / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _stats_folder(dataset: Path, output: str | Path | None) -> Path:
    """Where `stats` writes (default ``DATASET/stats``): a folder that is not, and holds none of, the dataset's own
    files (`paths.check_output`), and holds nothing but what `stats` writes (`export.check_replaceable`)."""
    out = Path(output) if output else dataset / "stats"
    checked = check_output(out, [dataset / name for name in DATASET_ENTRIES], kind="folder", flag="-o")
    return check_replaceable(checked, STATS_FILES)


def _load_clip(dataset: Path, row: dict) -> Layers:
    """An ok row's Layers, its files checked first (inside the dataset, present)."""
    clip_files(dataset, row)
    return Layers.load(clip_folder(dataset, row))


def _histogram(path: Path, name: str, values: list[float], label: str, bounds: tuple | None) -> None:
    """One PNG histogram of `values` (the foreground ratio's with the filters' bounds drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3), dpi=100)
    try:
        axes.hist(values, bins=20, range=bounds, color="#3b7dd8", edgecolor="white")
        if name == "fg_ratio":
            for edge in (0.01, 0.45):
                axes.axvline(edge, color="#c0392b", linestyle="--", linewidth=1)
        axes.set_xlabel(label)
        axes.set_ylabel("clips")
        axes.set_title(f"{label}: {len(values)} ok clips", fontsize=9)
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
