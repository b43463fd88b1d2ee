"""Dataset statistics: counts by status, split and reason, foreground ratio, motion and caption figures; the
Dataset folder's README.md and `splitmerge dataset stats` (with PNG histograms)."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..atomic import atomic_file


def summarize(rows: list[dict]) -> dict:
    """JSON-able statistics of manifest rows."""
    ok = [row for row in rows if row["status"] == "ok"]
    ratios = np.array([row["fg_ratio"] for row in ok], float)
    words = np.array([len(row["caption"].split()) for row in ok], float)
    seconds = np.array([row["seconds_total"] for row in rows if row["seconds_total"] == row["seconds_total"]])

    def spread(values: np.ndarray) -> dict:
        if len(values) == 0:
            return {}
        return {"mean": float(values.mean()), "min": float(values.min()), "median": float(np.median(values)),
                "max": float(values.max())}

    return {"rows": len(rows),
            "status": dict(Counter(row["status"] for row in rows)),
            "split": dict(Counter(row["split"] for row in ok)),
            "kind": dict(Counter(row["kind"] for row in ok)),
            "reasons": dict(Counter(f"{row['status']}: {row['reason']}" for row in rows if row["status"] != "ok")),
            "sources": len({row["source_sha1"] or row["source_path"] for row in rows if row["kind"] == "video"}),
            "fg_ratio": spread(ratios), "caption_words": spread(words), "seconds_per_clip": spread(seconds),
            "frames": int(sum(row["num_frames"] for row in ok))}


def _table(counts: dict) -> list[str]:
    """Markdown table rows of `counts`; keys come from data (splits, reasons), so they are escaped (`_cell`)."""
    return [f"| {_cell(key)} | {value} |" for key, value in sorted(counts.items())] or ["| - | 0 |"]


def _cell(value: object) -> str:
    """Text from data as one Markdown table cell: on one line, HTML escaped (Markdown passes HTML through), and
    backslash-escaped where Markdown would read a cell end, a link or code (``\\ | [ ] `` and backticks)."""
    text = re.sub(r"([\\|\[\]`])", r"\\\1", " ".join(str(value).split()))
    return html.escape(text, quote=True)


def _fenced(text: str, language: str = "") -> list[str]:
    """`text` as a Markdown code block whose fence is longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, text, fence]


def write_readme(dataset: Path, rows: list[dict], settings: dict) -> Path:
    """The Dataset folder's README.md: what is in it and how it was made."""
    stats = summarize(rows)
    ratio = stats["fg_ratio"]
    lines = ["# splitmerge dataset", "",
             f"{stats['status'].get('ok', 0)} clips ({stats['frames']} frames) from {stats['sources']} source "
             f"videos and {stats['kind'].get('synthetic', 0)} synthetic scenes; {len(rows)} candidates in all.",
             "", "| status | clips |", "|---|---|", *_table(stats["status"]),
             "", "| split (ok clips) | clips |", "|---|---|", *_table(stats["split"]),
             "", "| why not ok | clips |", "|---|---|", *_table(stats["reasons"]), ""]
    if ratio:
        lines += [f"Foreground ratio: mean {ratio['mean']:.3f}, median {ratio['median']:.3f}, "
                  f"range {ratio['min']:.3f}-{ratio['max']:.3f}. Caption words: mean "
                  f"{stats['caption_words']['mean']:.1f}.", ""]
    lines += ["Settings (`build.json`):", "", *_fenced(json.dumps(settings, indent=2), "json"), "",
              "Files: `manifest.parquet` (one row per candidate clip), `clips/<id>/` (Layers folders, ok clips "
              "only), `rows/<id>.json` (the rows as built). Load for training with "
              "`splitmerge.data.StmDataset(\"<this folder>\")`.", ""]
    path = dataset / "README.md"
    with atomic_file(path) as temporary:
        temporary.write_text("\n".join(lines))
    return path
