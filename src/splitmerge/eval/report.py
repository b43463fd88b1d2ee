"""`report.html` of an evaluation: the summary table (mean and 95% interval per method and metric, the best
marked), a bar chart per metric, and per case a looping side-by-side video (inputs | each method | truth)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..video.io import read_video, write_video
from ..video.layers import Video
from ..video.preview import side_by_side
from .bench import BenchCase

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 18px; color: #222; background: #fafafa; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 24px; }
table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f0f0f0; } td.best { background: #e3f4e3; font-weight: 600; }
.ci { color: #888; font-size: 11px; } .charts img { width: 300px; margin: 4px; background: #fff; }
.case { background: #fff; padding: 8px; margin: 10px 0; border-radius: 6px; box-shadow: 0 1px 3px #0002; }
.case video { max-width: 100%; display: block; } .note { color: #666; max-width: 900px; }
"""


def _cell(value: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def _charts(out: Path, metrics: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, methods = metrics["summary"], metrics["methods"]
    paths = []
    for name, higher in metrics["higher_is_better"].items():
        present = [m for m in methods if name in summary.get(m, {})]
        if not present:
            continue
        means = [summary[m][name]["mean"] for m in present]
        low = [summary[m][name]["mean"] - summary[m][name]["ci95"][0] for m in present]
        high = [summary[m][name]["ci95"][1] - summary[m][name]["mean"] for m in present]
        figure, axes = plt.subplots(figsize=(4, 2.6), dpi=100)
        axes.bar(range(len(present)), means, yerr=[low, high], capsize=4,
                 color=["#3b7dd8", "#e08a2e", "#4caf50", "#9c27b0"][: len(present)])
        axes.set_xticks(range(len(present)), present, fontsize=8)
        axes.set_title(f"{name} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        figure.tight_layout()
        path = out / "charts" / f"{name.replace('@', '_at_')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths


def _case_video(out: Path, case: BenchCase, methods: list[str]) -> Path:
    """inputs (subject layer, background) | each method | truth, side by side, looping in the page."""
    layer = case.foreground()
    background = case.background().frames
    results = [read_video(out / "videos" / method / f"{case.id}.mp4").frames for method in methods]
    truth = case.truth_video().frames if case.truth else None
    count = min([layer.num_frames, len(background)] + [len(r) for r in results])
    labels = ["subject layer", "background", *methods] + (["truth"] if truth is not None else [])
    frames = []
    for t in range(count):
        panels = [layer.foreground[t], background[t], *[r[t] for r in results]]
        if truth is not None:
            panels.append(truth[t])
        frames.append(side_by_side(panels, labels, height=min(180, background.shape[1])))
    path = out / "cases" / f"{case.id}.mp4"
    return write_video(path, Video(np.stack(frames), layer.fps), crf=20)


def _judge_table(judge: dict | None) -> str:
    """Win rates of the VLM judge, per pair and criterion (ties count half; unparsed answers are left out)."""
    if not judge:
        return ""
    rows = []
    for pair, table in judge["summary"].items():
        first, second = pair.split(" vs ")
        cells = []
        for entry in table.values():
            rate = "-" if entry["win_rate"] is None else f"{100 * entry['win_rate']:.0f}%"
            unparsed = f", {entry['unparsed']} unparsed" if entry["unparsed"] else ""
            cells.append(f"<td>{rate}<br><span class=ci>{entry[first]}/{entry['none']}/{entry[second]}{unparsed}"
                         "</span></td>")
        rows.append(f"<tr><th>{html.escape(pair)}</th>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(key)}</th>" for key in next(iter(judge["summary"].values())))
    return (f"<h2>VLM judge ({html.escape(str(judge['model']))}, {judge['frames']} frames per video)</h2>"
            "<p class=note>Win rate of the first method of each pair; below: wins / no preference / losses "
            "(ties count half; unparsed answers are left out).</p>"
            f"<table><tr><th>pair</th>{header}</tr>{''.join(rows)}</table>")


def write_report(out: Path, metrics: dict, cases: list[BenchCase]) -> Path:
    """Write ``report.html`` (and its charts and case videos) into `out`."""
    summary, methods = metrics["summary"], metrics["methods"]
    names = [n for n in metrics["higher_is_better"] if any(n in summary.get(m, {}) for m in methods)]
    header = "".join(f"<th>{html.escape(n)} {'&uarr;' if metrics['higher_is_better'][n] else '&darr;'}</th>"
                     for n in names)
    rows = []
    for method in methods:
        cells = []
        for name in names:
            entry = summary.get(method, {}).get(name)
            if entry is None:
                cells.append("<td>-</td>")
                continue
            values = [summary[m][name]["mean"] for m in methods if name in summary.get(m, {})]
            best = max(values) if metrics["higher_is_better"][name] else min(values)
            marker = ' class="best"' if len(values) > 1 and entry["mean"] == best else ""
            low, high = entry["ci95"]
            cells.append(f"<td{marker}>{_cell(entry['mean'])}<br><span class=ci>[{_cell(low)}, {_cell(high)}]"
                         f"</span></td>")
        rows.append(f"<tr><th>{html.escape(method)}</th>{''.join(cells)}</tr>")
    charts = _charts(out, metrics)
    mattes = sorted({row["matte"] for row in metrics["rows"]})
    blocks = []
    for case in cases:
        video = _case_video(out, case, methods)
        scores = [row for row in metrics["rows"] if row["case"] == case.id]
        shown = ("placement_iou", "depth_scale_error", "colour_error", "psnr")
        line = "; ".join(f"{row['method']}: " + ", ".join(f"{k} {_cell(v)}" for k, v in row["scores"].items()
                                                           if k in shown)
                         for row in scores)
        blocks.append(f'<div class="case"><b>{html.escape(case.id)}</b> &middot; {html.escape(case.prompt)}<br>'
                      f'<video src="{video.relative_to(out)}" autoplay loop muted playsinline></video>'
                      f'<span class="ci">{html.escape(line)}</span></div>')
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>splitmerge evaluation</title>
<style>{STYLE}</style></head><body>
<h1>Evaluation: {html.escape(metrics['kind'])} benchmark, {metrics['cases']} cases</h1>
<p class="note">Means over cases with 95% bootstrap intervals; the best per metric is shaded. Metric names carry
their backend: <code>@appearance</code>, <code>@flow</code>, <code>@dis</code>, <code>@minilm</code> are offline
proxies for the paper's ViCLIP / Video Swin / learned-flow metrics, not the paper's numbers. The subject's place
in each result comes from: {html.escape(', '.join(mattes))} (method = the method's own matte; resplit = the result
split again).
Ground-truth metrics (psnr, ssim, fg_*, bg_psnr, placement_iou, colour_error = mean CIEDE2000 under the true matte,
warp_error x1000) exist only where the benchmark has truth; depth_scale_error (synthetic scenes: |ln| of the
subject's height against the height its feet's depth on the ground implies) scores a plausible place, not the
true one.</p>
<table><tr><th>method</th>{header}</tr>{''.join(rows)}</table>
{_judge_table(metrics.get("judge"))}
<h2>Charts</h2><div class="charts">{''.join(f'<img src="{p.relative_to(out)}">' for p in charts)}</div>
<h2>Cases</h2>{''.join(blocks)}
</body></html>
"""
    path = out / "report.html"
    with atomic_file(path) as temporary:
        temporary.write_text(page)
    return path
