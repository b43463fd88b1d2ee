"""Split quality benchmark: ground-truth clips, the default backends against the naive median baseline.

    .venv/bin/python benchmarks/split_quality.py [--out bench_out/split_quality] [--cases a,b,...] [--frames 49]

Builds its own ground truth (`splitmerge.eval.split_truth`: real photos and a real clip frame moved by virtual
cameras, real cut-outs with known mattes walking along paths; static, pan, zoom, handheld, slow, pausing, flat)
and splits every case twice in this one run: the defaults (``motion`` segmenter + ``propagate`` restorer) and
the naive baseline (``median`` + ``median``). Prints per case and mean:
- J: mask IoU against the true matte (both at 0.5), mean over frames (DAVIS region similarity);
- F: boundary F-measure, tolerance 0.008 x diagonal (DAVIS contour accuracy);
- hole PSNR: the restored background against the true clean background, inside the true subject footprint;
- frames/s: frames split per second of wall time (camera, segmentation, restoration; captions excluded).
Then splits two real sample clips (no ground truth) for looking at. Writes per case a PNG (source | true matte |
matte | baseline matte | background | baseline background | true background, three times) and results.json.
Targets (issue 3): mean J >= 0.85, hole PSNR >= 26 dB, >= 12 frames/s at 240x360.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import splitmerge as sm
from splitmerge.eval import boundary_f, mask_iou, masked_psnr
from splitmerge.eval.split_truth import BENCHMARK_CASES, render_case
from splitmerge.decompose.pipeline import NoSubjectError, split
from splitmerge.video.preview import grid, write_png

METHODS = {"splitmerge": {"segmenter": "motion", "restorer": "propagate"},
           "median baseline": {"segmenter": "median", "restorer": "median"}}
REAL_CLIPS = (("carphone", 0, 49), ("bikes", 137, 49))  # (sample, first frame, frames)


def run_method(truth, backends: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """Split a truth clip with `backends`; returns (scores, alpha, background)."""
    video = sm.Video(truth.frames, truth.fps)
    started = time.perf_counter()
    try:
        layers = split(video, caption="benchmark", **backends)
        alpha, background = layers.alpha, layers.background
    except NoSubjectError:
        alpha, background = np.zeros_like(truth.alpha), truth.frames.copy()
    seconds = time.perf_counter() - started
    hole = truth.alpha > 0.01
    scores = {"J": mask_iou(alpha, truth.alpha), "F": boundary_f(alpha, truth.alpha),
              "hole_psnr": masked_psnr(truth.background, background, hole),
              "fps": len(truth.frames) / seconds}
    return scores, alpha, background


def case_picture(truth, outputs: dict, path: Path) -> None:
    ours, base = outputs["splitmerge"], outputs["median baseline"]
    count = len(truth.frames)
    rows = [[truth.frames[t], truth.alpha[t], ours[0][t], base[0][t], ours[1][t], base[1][t], truth.background[t]]
            for t in (0, count // 2, count - 1)]
    write_png(path, grid(rows, ["source", "true matte", "matte", "baseline matte", "background",
                                "baseline background", "true background"], height=120))


def split_real_clips(out: Path) -> list[dict]:
    rows = []
    for name, start, frames in REAL_CLIPS:
        started = time.perf_counter()
        layers = split(sm.sample_path(name), start=start, frames=frames)
        seconds = time.perf_counter() - started
        layers.save(out / f"real_{name}")
        count = layers.num_frames
        picture = [[layers.frames[t], layers.alpha[t], layers.foreground[t], layers.background[t]]
                   for t in (0, count // 2, count - 1)]
        write_png(out / f"real_{name}.png", grid(picture, ["source", "matte", "foreground", "background"],
                                                height=160))
        rows.append({"clip": name, "start": start, "frames": count, "size": list(layers.frames.shape[1:3]),
                     "fg_ratio": layers.fg_ratio, "filters": layers.meta["filters"], "caption": layers.caption,
                     "seconds": seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out/split_quality")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--frames", type=int, default=None, help="frames per case (default: each case's own)")
    parser.add_argument("--no-real", action="store_true", help="skip the real sample clips")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cases = BENCHMARK_CASES
    if args.cases:
        wanted = args.cases.split(",")
        cases = tuple(case for case in cases if case.name in wanted)
    if args.frames:
        from dataclasses import replace

        cases = tuple(replace(case, frames=args.frames) for case in cases)

    results = []
    for case in cases:
        truth = render_case(case)
        outputs, row = {}, {"case": case.name, "fg_ratio": float(truth.alpha.mean())}
        for method, backends in METHODS.items():
            scores, alpha, background = run_method(truth, backends)
            outputs[method] = (alpha, background)
            row[method] = scores
        case_picture(truth, outputs, out / f"{case.name}.png")
        results.append(row)
        ours, base = row["splitmerge"], row["median baseline"]
        print(f"{case.name:<14} J {ours['J']:.3f} ({base['J']:.3f})  F {ours['F']:.3f} ({base['F']:.3f})  "
              f"hole {ours['hole_psnr']:.1f} dB ({base['hole_psnr']:.1f})  "
              f"{ours['fps']:.1f} fps ({base['fps']:.1f})", flush=True)

    means = {method: {key: float(np.mean([row[method][key] for row in results]))
                      for key in ("J", "F", "hole_psnr", "fps")} for method in METHODS}
    real = [] if args.no_real else split_real_clips(out)
    (out / "results.json").write_text(json.dumps({"cases": results, "mean": means, "real_clips": real},
                                                 indent=2) + "\n")

    size = f"{cases[0].size[0]}x{cases[0].size[1]}" if cases else ""
    print(f"\n| case ({size}, {cases[0].frames if cases else 0} frames) | J | F | hole PSNR (dB) | frames/s |")
    print("|---|---|---|---|---|")
    for row in results:
        ours, base = row["splitmerge"], row["median baseline"]
        print(f"| {row['case']} | {ours['J']:.3f} ({base['J']:.3f}) | {ours['F']:.3f} ({base['F']:.3f}) | "
              f"{ours['hole_psnr']:.1f} ({base['hole_psnr']:.1f}) | {ours['fps']:.1f} ({base['fps']:.1f}) |")
    ours, base = means["splitmerge"], means["median baseline"]
    print(f"| **mean** | **{ours['J']:.3f}** ({base['J']:.3f}) | **{ours['F']:.3f}** ({base['F']:.3f}) | "
          f"**{ours['hole_psnr']:.1f}** ({base['hole_psnr']:.1f}) | **{ours['fps']:.1f}** ({base['fps']:.1f}) |")
    print("(in brackets: the naive median baseline, same run)")
    for row in real:
        print(f"real clip {row['clip']} from frame {row['start']}: {row['frames']} frames at "
              f"{row['size'][0]}x{row['size'][1]}, fg_ratio {row['fg_ratio']:.3f}, "
              f"passed {row['filters']['passed']} {row['filters']['reason']}, {row['seconds']:.1f} s; "
              f"\"{row['caption']}\"")
    print(f"pictures and results.json in {out}")


if __name__ == "__main__":
    main()
