"""`report.html` of an evaluation: the summary table (mean and 95% interval per method and metric, the best
marked), a bar chart per metric, and per case a looping side-by-side video (inputs | each method | truth)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..video.io import write_video
from ..video.layers import Video
from ..video.preview import side_by_side
from .bench import BenchCase

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 18px; color: #222; background: #fafafa; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 24px; }
table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f0f0f0; } td.best { background: #e3f4e3; font-weight: 600; } td.worse { background: #f8e1e1; }
.ci { color: #888; font-size: 11px; } .charts img { width: 300px; margin: 4px; background: #fff; }
.case { background: #fff; padding: 8px; margin: 10px 0; border-radius: 6px; box-shadow: 0 1px 3px #0002; }
.case video { max-width: 100%; display: block; } .note { color: #666; max-width: 900px; }
"""


TRACKS = {"plain": "Plain prompts: each case's prompt is what a user would write for the inputs as given "
                   "(measured on the subject layer as given; no left or right, nothing read off the truth).",
          "stated": "Stated prompts: the plain prompt plus the truth's direction of motion, as a user stating the "
                    "motion they want.",
          "harmonization": "Harmonization: every method keeps the truth's placement (the inputs only had their "
                           "colours jittered); colour alone is scored."}


def _options_line(options: dict) -> str:
    """"stm: mirror=keep, model=default; copy-paste: -" for the page."""
    return "; ".join(f"{method}: " + (", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "-")
                     for method, settings in options.items()) or "-"


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


def case_video(out: Path, case_id: str, layer: np.ndarray, background: np.ndarray, results: dict[str, np.ndarray],
               truth: np.ndarray | None, fps: float) -> Path:
    """``cases/<case_id>.mp4`` in `out`: inputs (the subject layer (T, H, W, 3), the background) | each method's
    result (`results`: method -> frames) | the truth, side by side, for the report to loop."""
    count = min([len(layer), len(background)] + [len(r) for r in results.values()])
    labels = ["subject layer", "background", *results] + (["truth"] if truth is not None else [])
    frames = []
    for t in range(count):
        panels = [layer[t], background[t], *[r[t] for r in results.values()]]
        if truth is not None:
            panels.append(truth[t])
        frames.append(side_by_side(panels, labels, height=min(180, background.shape[1])))
    return write_video(out / "cases" / f"{case_id}.mp4", Video(np.stack(frames), fps), crf=20)


def _versus_table(versus: dict, directions: dict) -> str:
    """Paired differences against copy-paste (mean over cases of method minus copy-paste, 95% interval)."""
    if not versus:
        return ""
    names = list(next(iter(versus.values())))
    rows = []
    for pair, table in versus.items():
        cells = []
        for name in names:
            entry = table[name]
            if entry["mean"] is None:
                cells.append("<td>-</td>")
                continue
            low, high = entry["ci95"]
            better = (low > 0) if directions[name] else (high < 0)
            worse = (high < 0) if directions[name] else (low > 0)
            mark = ' class="best"' if better else ' class="worse"' if worse else ""
            cells.append(f"<td{mark}>{entry['mean']:+.3f}<br><span class=ci>[{low:+.3f}, {high:+.3f}]</span></td>")
        rows.append(f"<tr><th>{html.escape(pair)}</th>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(n)} {'&uarr;' if directions[n] else '&darr;'}</th>" for n in names)
    return ("<h2>Paired differences against copy-paste</h2><p class=note>Per case, the method's score minus "
            "copy-paste's on the same inputs; mean and 95% bootstrap interval. Shaded green: better beyond the "
            "interval; red: worse beyond it; unshaded: not distinguishable from copy-paste.</p>"
            f"<table><tr><th>pair</th>{header}</tr>{''.join(rows)}</table>")


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
    """Write ``report.html`` (and its charts) into `out`, which holds the case videos (`case_video`)."""
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
        scores = [row for row in metrics["rows"] if row["case"] == case.id]
        shown = ("placement_iou", "depth_scale_error", "colour_error", "light_error", "contrast_error", "ring_psnr",
                 "effects_psnr", "bg_psnr")
        line = "; ".join(f"{row['method']} ({row['track']}): " + ", ".join(
            f"{k} {_cell(v)}" for k, v in row["scores"].items() if k in shown) for row in scores)
        prompt = case.prompt_for(metrics["prompt"])
        blocks.append(f'<div class="case"><b>{html.escape(case.id)}</b> &middot; prompt: {html.escape(prompt)}<br>'
                      f'<video src="cases/{html.escape(case.id)}.mp4" autoplay loop muted playsinline></video>'
                      f'<span class="ci">{html.escape(line)}</span></div>')
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>splitmerge evaluation</title>
<style>{STYLE}</style></head><body>
<h1>Evaluation: {html.escape(metrics['kind'])} benchmark, {metrics['cases']} cases, track
{html.escape(metrics['track'])}</h1>
<p class="note">{html.escape(TRACKS[metrics['track']])} Options: {html.escape(_options_line(metrics['options']))}.</p>
<p class="note">Means over cases with 95% bootstrap intervals; the best mean per metric is shaded (whether it is better
beyond chance: the paired differences below). Metric names carry
their backend: <code>@appearance</code>, <code>@flow</code>, <code>@dis</code>, <code>@minilm</code> are offline
proxies for the paper's ViCLIP / Video Swin / learned-flow metrics, not the paper's numbers. The subject's place
in each result comes from: {html.escape(', '.join(mattes))} (method = the method's own matte; resplit = the result
split again).
Ground-truth metrics exist only where the benchmark has truth, each measuring one thing: placement_iou (the
result's matte against the true one), colour_error (mean CIEDE2000 where both mattes overlap), light_error
(CIEDE2000 between the mean colours of the result's subject and the true one: light and tint, wherever it landed),
contrast_error (|ln| of the result's subject's lightness contrast against the true one's: 0.69 for a subject washed
out to half its contrast, wherever it landed),
ring_psnr (within 12 px outside the true matte: shadow, contact, and any misplaced subject there), effects_psnr
(that ring with the result's own subject taken back to the input background: the shadow and contact drawn there
alone), bg_psnr (farther than 12 px from both mattes), psnr and ssim (the whole frame), warp_error (x1000,
temporal steadiness); depth_scale_error (synthetic scenes: |ln| of the subject's height against the height its
feet's depth on the ground implies) scores a plausible place, not the true one.</p>
<table><tr><th>method</th>{header}</tr>{''.join(rows)}</table>
{_versus_table(metrics.get("versus", {}), metrics["higher_is_better"])}
{_judge_table(metrics.get("judge"))}
<h2>Charts</h2><div class="charts">{''.join(f'<img src="{p.relative_to(out)}">' for p in charts)}</div>
<h2>Cases</h2>{''.join(blocks)}
</body></html>
"""
    path = out / "report.html"
    with atomic_file(path) as temporary:
        temporary.write_text(page)
    return path
