"""Composition in moving shots, against ground truth: does a placed subject stay on its spot of the scene?

    .venv/bin/python benchmarks/anchor.py [--out bench_out/anchor] [--picture docs/images/anchor_pan.jpg]

Each case of `eval.anchor_truth.ANCHOR_CASES` (real photos, and a real street whose bikes ride through it, filmed
by known virtual cameras: pan, zoom, handheld shake with roll, rotation, pan with zoom; subjects that stand still
in their own clips, one filmed by a panning camera) is composed by each method with the subject placed on the
background's first frame, exactly as a user places it (`--position`, scale 1). Per method and anchor: the drift
(RMS distance, px, of the result's matte centroid from the truth's, over every frame where the truth shows the
whole subject) and the size error (mean |sqrt(area ratio) - 1|), each over the cases with a 95% bootstrap
interval, and the seconds per case (the world anchor's camera tracking included; occlusion off, so the matte is
the whole subject). The methods see the same
inputs; the truth's camera is never given to them (the subject's own camera is the one its split measures).

The occlusion case (`eval.anchor_truth.OcclusionCase`: a real cut-out walking nearer the camera, in front of where
the subject is placed, in a still shot of a real photo): the visible subject's IoU against the truth (the subject
behind the walker) over every frame and over the frames where the walker hides at least 5% of it, with
``occlusion="off"`` (drawn over everything) and ``"auto"`` (the background's movers split and ordered by their
feet, `merge.occlusion`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RUNS = (("copy-paste", "screen"), ("copy-paste", "world"), ("harmonized-copy-paste", "world"), ("stm", "world"))


def interval(values, seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the mean of `values` over cases."""
    values = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (draws, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run(cases, runs=RUNS, shown: str | None = None) -> dict:
    """{(method, anchor): [{"case", "drift", "size_error", "frames", "seconds"}]} and the results of case `shown`
    ({(method, anchor): Composite, "clip": its AnchorClip}, for the picture; empty when it is not run)."""
    import splitmerge as sm
    from splitmerge.eval.anchor_truth import anchor_errors, render_anchor_case

    rows, first = {run: [] for run in runs}, {}
    for case in cases:
        clip = render_anchor_case(case)
        for method, anchor in runs:
            started = time.perf_counter()
            result = sm.compose(fg=clip.subject, background=clip.background, method=method, position=clip.position,
                                scale=clip.scale, anchor=anchor, occlusion="off", steps=4)
            seconds = time.perf_counter() - started
            errors = anchor_errors(result.alpha, clip.truth_alpha)
            rows[(method, anchor)].append({"case": case.name, **errors, "seconds": round(seconds, 2)})
            print(f"{case.name:22s} {method:22s} {anchor:6s} drift {errors['drift']:7.2f} px  size "
                  f"{errors['size_error']:.3f}  ({seconds:.1f} s)", flush=True)
            if case.name == shown:
                first[(method, anchor)] = result
        if case.name == shown:
            first["clip"] = clip
    return rows, first


def summary(rows: dict) -> list[dict]:
    table = []
    for (method, anchor), cases in rows.items():
        drift = [row["drift"] for row in cases]
        size = [row["size_error"] for row in cases]
        frames = np.concatenate([[row["drift"] ** 2] * row["frames"] for row in cases])
        table.append({"method": method, "anchor": anchor, "drift": float(np.mean(drift)), "drift_ci": interval(drift),
                      "drift_all_frames": float(np.sqrt(frames.mean())), "worst_drift": float(np.max(drift)),
                      "size_error": float(np.mean(size)), "size_ci": interval(size), "worst_size": float(np.max(size)),
                      "seconds": float(np.mean([row["seconds"] for row in cases]))})
    return table


OCCLUSION_RUNS = (("copy-paste", "off"), ("copy-paste", "auto"), ("stm", "auto"))


def occlusion(runs=OCCLUSION_RUNS) -> list[dict]:
    """The occlusion case: per (method, occlusion) the visible subject's IoU (`visible_iou`) and seconds."""
    import splitmerge as sm
    from splitmerge.eval.anchor_truth import render_occlusion_case, visible_iou

    clip = render_occlusion_case()
    rows = []
    for method, mode in runs:
        started = time.perf_counter()
        result = sm.compose(fg=clip.subject, background=clip.background, method=method, position=clip.position,
                            scale=clip.scale, occlusion=mode, steps=4)
        scores = visible_iou(result.alpha, clip)
        rows.append({"method": method, "occlusion": mode, **scores,
                     "seconds": round(time.perf_counter() - started, 2)})
        print(f"occlusion {method:12s} {mode:5s} visible IoU {scores['all']:.3f} (hidden frames "
              f"{scores['occluded']:.3f}, {scores['occluded_frames']} of {scores['frames']})  "
              f"({rows[-1]['seconds']:.1f} s)", flush=True)
    return rows


def picture(first: dict, path: Path) -> None:
    """Three frames (first, middle, last) of the shown case: the truth's outline over copy-paste on the screen
    and on the world, side by side."""
    import cv2

    clip = first["clip"]
    count = len(clip.truth_alpha)
    rows = []
    for t in (0, count // 2, count - 1):
        panels = []
        for key, label in ((("copy-paste", "screen"), "screen anchor"), (("copy-paste", "world"), "world anchor")):
            frame = np.ascontiguousarray(first[key].frames[t])
            outline = (clip.truth_alpha[t] > 0.5).astype(np.uint8)
            contours, _ = cv2.findContours(outline, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(frame, contours, -1, (255, 230, 0), 1)
            cv2.putText(frame, f"{label}, frame {t}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                        cv2.LINE_AA)
            panels.append(frame)
        rows.append(np.concatenate([panels[0], np.full((len(frame), 4, 3), 255, np.uint8), panels[1]], axis=1))
    image = np.concatenate([np.concatenate([row, np.full((4, row.shape[1], 3), 255, np.uint8)]) for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image[:-4], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out/anchor")
    parser.add_argument("--picture", default=None, help="write a case's frames, screen vs world (JPEG)")
    parser.add_argument("--picture-case", default="street-pan", help="the case the picture shows")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    args = parser.parse_args()
    from splitmerge.eval.anchor_truth import ANCHOR_CASES

    cases = [case for case in ANCHOR_CASES if args.cases is None or case.name in args.cases.split(",")]
    rows, first = run(cases, shown=args.picture_case)
    table = summary(rows)
    print(f"\n{len(cases)} cases, 240x360, 49 frames; drift: RMS px over each case's frames, mean over cases [95% CI]")
    for row in table:
        print(f"{row['method']:22s} {row['anchor']:6s} drift {row['drift']:6.2f} [{row['drift_ci'][0]:.2f}, "
              f"{row['drift_ci'][1]:.2f}] (worst {row['worst_drift']:.2f}; all frames {row['drift_all_frames']:.2f})"
              f"  size {100 * row['size_error']:.2f}% [{100 * row['size_ci'][0]:.2f}, {100 * row['size_ci'][1]:.2f}]"
              f" (worst {100 * row['worst_size']:.2f}%)  {row['seconds']:.1f} s/case")
    hidden = occlusion()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "anchor.json").write_text(json.dumps({"summary": table, "cases": {f"{m}/{a}": r for (m, a), r in
                                                                               rows.items()},
                                                "occlusion": hidden}, indent=2) + "\n")
    if args.picture and first:
        picture(first, Path(args.picture))
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
