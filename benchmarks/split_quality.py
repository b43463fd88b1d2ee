"""Split quality benchmark: ground-truth clips, the default backends against the naive median baseline.

    .venv/bin/python benchmarks/split_quality.py [--set easy|hard|both] [--out bench_out/split_quality]
                                                 [--cases a,b,...] [--frames 49] [--no-real]

Builds its own ground truth (`splitmerge.eval.split_truth`: real photos and a real clip frame moved by virtual
cameras, real cut-outs with known mattes walking along paths; static, pan, zoom, handheld, slow, pausing, flat)
and splits every case up to four times in this one run: the default split (``splitmerge.split`` with its default
backends: ``motion`` segmenter, ``propagate`` restorer, the default matting stage), the same with the other
matting stage (``rule`` or the learned ``net``, `decompose.matting`; left out when this checkout has no bundled
network), the default with the segmenter's objects as spatio-temporal connected components
(``motion.objects=connected``, the default before objects were tracked through time), the shadow kept in the
matte (``effects=False``, rule, as in issue 3) and the naive baseline (``median`` + ``median``).

Two sets: "easy" (`BENCHMARK_CASES`, the issue 3 cases) and "hard" (`HARD_CASES`, issue 17: non-rigid subjects,
a long stop, soft ground shadows, other movers in the background, a moving real street clip as the world,
motion blur and soft edges, camera motion). Prints per case and mean:
- J: mask IoU against the true matte (both at 0.5), mean over frames (DAVIS region similarity);
- F: boundary F-measure, tolerance 0.008 x diagonal (DAVIS contour accuracy);
- hole PSNR: the restored background against the true clean background, inside the true subject footprint;
- frames/s: frames split per second of wall time (camera, segmentation, restoration, effects; captions
  excluded), with the per-frame work on `SPLITMERGE_THREADS` threads (default: every core; set it to 1 for the
  single-thread figure);
and on the hard set also:
- SAD / grad: alpha SAD per frame and the gradient error (x 1000) over the true matte's soft pixels;
- debris (both sets): the matte's mass farther than 2 px outside the true matte, over the true matte's mass
  (`matte_debris`: a glow of the old scene around the subject, pieces of scenery);
- see-through (both sets): 1 - the mean matte where the true matte is solid (>= 0.99) (`matte_see_through`:
  holes, a too-soft inside: the old scene showing through the subject);
- leak: the share of the true visible shadow (gain < 0.9, true alpha < 0.1) the matte covers (alpha > 0.5);
- plate PSNR over the subject and its shadow (true alpha > 0.01 or gain < 0.99; the true plate has no shadow);
- effects PSNR where the shadow is (estimated effects gain vs the true gain, x 255; no effects layer = 1);
- flicker: mean |change of the matte - change of the true matte| per frame, x 1000;
- plate ceiling: the plate PSNR the default restorer reaches given the true matte and shadow as its hole
  (`plate_ceiling`), i.e. what exact mattes and effects alone would give;
- what the footage films (`filmed_bound`): the share of the subject + shadow pixels whose scene point no frame
  shows uncovered (a restorer must invent them), and the plate PSNR over the rest when each pixel takes the
  sample closest to the truth among the frames that film its point (an oracle: no restorer that takes the
  scene from the clip does better there); the same for the shadow (never seen unshadowed; effects PSNR with the
  gain = frame / best sample).
Shadow figures are over the cases with a shadow ("-" elsewhere). Then splits two real sample clips (no ground
truth) for looking at. Writes per case a PNG (source | true matte | matte | baseline matte | background |
baseline background | true background, three times) and results.json.
Targets (issue 3, easy): mean J >= 0.85, hole PSNR >= 26 dB, >= 12 frames/s at 240x360. Targets (issue 17,
hard, for later): mean J >= 0.90, shadow leak <= 0.10, plate >= 30 dB over subject + shadow, effects >= 30 dB
where shadows are, >= 20 frames/s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

import splitmerge as sm
from splitmerge.eval import boundary_f, mask_iou, masked_psnr, psnr
from splitmerge.eval.metrics import (effects_psnr, matte_debris, matte_flicker, matte_see_through, plate_psnr,
                                     shadow_leak, soft_edge_gradient_error, soft_edge_sad)
from splitmerge.eval.split_truth import BENCHMARK_CASES, HARD_CASES, render_case
from splitmerge.decompose.backends import SplitClip, get_backend
from splitmerge.decompose.matting import NetMatting
from splitmerge.decompose.pipeline import NoSubjectError, SplitConfig, split
from splitmerge.decompose.restore import hole_masks
from splitmerge.parallel import thread_count
from splitmerge.video.preview import grid, write_png

DEFAULT_MATTING = SplitConfig().matting
OTHER_MATTING = "net" if DEFAULT_MATTING == "rule" else "rule"
METHODS = {"splitmerge": {},  # the default split, whatever its default backends are
           f"matting {OTHER_MATTING}": {"matting": OTHER_MATTING},  # the other matting stage (decompose.matting)
           "connected objects": {"backend_options": {"motion": {"objects": "connected"}}},  # before stop 24
           "shadow kept": {"effects": False, "matting": "rule"},  # issue 3's split: the shadow stays in the matte
           "median baseline": {"segmenter": "median", "restorer": "median", "matting": "rule"}}
if not NetMatting.availability()[0]:  # no bundled matting network in this checkout
    METHODS.pop("matting net", None)
OTHERS = tuple(method for method in METHODS if method != "splitmerge")  # in brackets after the default, in order
SETS = {"easy": BENCHMARK_CASES, "hard": HARD_CASES}
EASY_KEYS = ("J", "F", "debris", "see_through", "hole_psnr", "fps")
HARD_KEYS = ("J", "F", "sad", "grad", "debris", "see_through", "leak", "plate_psnr", "effects_psnr", "flicker", "fps")
REAL_CLIPS = (("carphone", 0, 49), ("bikes", 137, 49))  # (sample, first frame, frames)


def run_method(truth, backends: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """Split a truth clip with `backends`; returns (scores, alpha, background)."""
    video = sm.Video(truth.frames, truth.fps)
    started = time.perf_counter()
    effects = None
    try:
        layers = split(video, caption="benchmark", **backends)
        alpha, background = layers.alpha, layers.background
        effects = getattr(layers, "effects", None)   # None (no effects layer): a gain of 1 everywhere
    except NoSubjectError:
        alpha, background = np.zeros_like(truth.alpha), truth.frames.copy()
    seconds = time.perf_counter() - started
    hole = truth.alpha > 0.01
    gain = truth.effects if truth.effects is not None else np.ones_like(truth.alpha)
    if effects is not None:   # a gain in [0, 1] (or uint8 0..255), per pixel or per channel
        scale = 255.0 if np.asarray(effects).dtype == np.uint8 else 1.0
        effects = np.asarray(effects, np.float32) / scale
        effects = effects.mean(axis=-1) if effects.ndim == 4 else effects
        effects = effects.reshape(truth.alpha.shape)
    shadowed = bool((gain < 0.99).any())
    scores = {"J": mask_iou(alpha, truth.alpha), "F": boundary_f(alpha, truth.alpha),
              "hole_psnr": masked_psnr(truth.background, background, hole),
              "sad": soft_edge_sad(alpha, truth.alpha), "grad": soft_edge_gradient_error(alpha, truth.alpha),
              "debris": matte_debris(alpha, truth.alpha), "see_through": matte_see_through(alpha, truth.alpha),
              "leak": shadow_leak(alpha, truth.alpha, gain) if shadowed else math.nan,
              "plate_psnr": plate_psnr(truth.background, background, truth.alpha, gain),
              "effects_psnr": effects_psnr(gain, effects, truth.alpha) if shadowed else math.nan,
              "flicker": 1000.0 * matte_flicker(alpha, truth.alpha),
              "fps": len(truth.frames) / seconds}
    return scores, alpha, background


def plate_ceiling(truth) -> float:
    """Plate PSNR over subject + shadow (as `plate_psnr` in `run_method`) of the default restorer given the true
    matte and the true shadow as the hole: what the plate would score were the matte and the effects exact. Where
    the scene behind the subject is never uncovered, or moves (another mover passing behind it), a restorer that
    fills from other frames cannot reach the truth whatever the matte."""
    hole = truth.alpha if truth.effects is None else np.maximum(truth.alpha, (truth.effects < 0.99).astype(np.float32))
    restorer = get_backend("restorer", SplitConfig().restorer)
    background = restorer.restore(SplitClip(truth.frames, truth.fps), hole)
    return plate_psnr(truth.background, background, truth.alpha, truth.effects)


def filmed_bound(truth) -> dict:
    """What any restorer that takes the scene from the clip's own frames could reach, whatever its mattes and
    its choice of frames: every frame's subject + shadow pixels (as in `plate_psnr`) are looked up at their scene
    point on the clip's stabilised canvas in every frame that shows that point uncovered and unshadowed (the
    true matte and shadow grown by 1 px left out), and the sample closest to the true plate is taken (an oracle
    choice, so the figure is optimistic). Returns {"never_filmed": share of those pixels no frame shows,
    "plate_bound": PSNR (dB) over the rest, "never_unshadowed": the same share over the shadow only (true gain
    < 0.99, true alpha < 0.1), "effects_bound": effects PSNR (x 255) there, the gain being the frame over its
    best sample}. A restorer must invent the never-filmed scene; a scene that moves behind the subject (another
    mover, a moving street) is not at its canvas point in other frames either."""
    clip = SplitClip(truth.frames, truth.fps)
    canvas, warped = clip.canvas, clip.canvas_frames
    gain = truth.effects if truth.effects is not None else np.ones_like(truth.alpha)
    covered = hole_masks(np.maximum(truth.alpha, (gain < 0.99).astype(np.float32)), dilation=1)
    shows = np.stack([canvas.from_frame((~covered[t]).astype(np.uint8), t, cv2.INTER_NEAREST) > 0
                      for t in range(len(covered))]) & warped.any(axis=-1)
    height, width = canvas.size
    plate = truth.frames.copy()
    estimated_gain = gain.copy()
    region = (truth.alpha > 0.01) | (gain < 0.99)
    shadow = (gain < 0.99) & (truth.alpha < 0.1)
    filmed = np.zeros_like(region)
    for t in range(len(region)):
        ys, xs = np.nonzero(region[t])
        points = cv2.perspectiveTransform(np.stack([xs, ys], 1).astype(np.float64)[None], canvas.to_canvas[t])[0]
        cx = np.clip(np.rint(points[:, 0]).astype(int), 0, width - 1)
        cy = np.clip(np.rint(points[:, 1]).astype(int), 0, height - 1)
        samples = warped[:, cy, cx].astype(np.float32)                         # (T, N, 3)
        error = np.abs(samples - truth.background[t, ys, xs].astype(np.float32)).sum(axis=-1)
        error[~shows[:, cy, cx]] = np.inf
        best = np.argmin(error, axis=0)
        found = np.isfinite(error[best, np.arange(len(ys))])
        sample = samples[best, np.arange(len(ys))]
        plate[t, ys, xs] = np.clip(np.rint(sample), 0, 255).astype(np.uint8)
        filmed[t, ys[found], xs[found]] = True
        ratio = truth.frames[t, ys, xs].astype(np.float32).sum(-1) / np.maximum(sample.sum(-1), 1.0)
        estimated_gain[t, ys, xs] = np.clip(ratio, 0.0, 1.0)
    bound = {"never_filmed": float(1 - filmed[region].mean()),
             "plate_bound": masked_psnr(truth.background, plate, region & filmed)}
    if shadow.any():
        bound["never_unshadowed"] = float(1 - filmed[shadow].mean())
        seen_shadow = shadow & filmed
        bound["effects_bound"] = (psnr(255 * gain[seen_shadow], 255 * estimated_gain[seen_shadow])
                                  if seen_shadow.any() else math.nan)
    else:
        bound["never_unshadowed"] = bound["effects_bound"] = math.nan
    return bound


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


def _jsonable(value):
    """NaN and inf (no shadow, an exact plate) as null: results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _mean(values) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return float(np.mean(finite)) if finite else math.nan


def _show(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


FORMATS = {"J": 3, "F": 3, "hole_psnr": 1, "sad": 1, "grad": 1, "debris": 3, "see_through": 3, "leak": 2,
           "plate_psnr": 1, "effects_psnr": 1, "flicker": 2, "fps": 1}
HEADINGS = {"J": "J", "F": "F", "hole_psnr": "hole PSNR (dB)", "sad": "soft-edge SAD", "grad": "grad (x1e3)",
            "debris": "debris", "see_through": "see-through", "leak": "shadow leak",
            "plate_psnr": "plate PSNR subject+shadow (dB)", "effects_psnr": "effects PSNR (dB)",
            "flicker": "flicker (x1e3)", "fps": "frames/s"}


def _cells(row: dict, key: str, bold: bool = False) -> str:
    """The default's figure for `key`, then the other methods' in brackets: ``0.903 (0.880 / 0.618)``."""
    mark = "**" if bold else ""
    others = " / ".join(_show(row[method][key], FORMATS[key]) for method in OTHERS)
    return f"{mark}{_show(row['splitmerge'][key], FORMATS[key])}{mark} ({others})"


BOUND_FORMATS = {"plate_ceiling": 1, "never_filmed": 2, "plate_bound": 1, "never_unshadowed": 2, "effects_bound": 1}
BOUND_HEADINGS = {"plate_ceiling": "plate ceiling (dB)", "never_filmed": "never filmed",
                  "plate_bound": "plate, best filmed sample (dB)", "never_unshadowed": "shadow never seen unshadowed",
                  "effects_bound": "effects, best filmed sample (dB)"}


def truth_bounds(truth) -> dict:
    """The figures of a case that no split can change: `plate_ceiling` and `filmed_bound`."""
    return {"plate_ceiling": plate_ceiling(truth), **filmed_bound(truth)}


def run_set(name: str, cases, out: Path) -> tuple[list[dict], dict]:
    results = []
    for case in cases:
        truth = render_case(case)
        outputs, row = {}, {"case": case.name, "set": name, "fg_ratio": float(truth.alpha.mean())}
        for method, backends in METHODS.items():
            scores, alpha, background = run_method(truth, backends)
            outputs[method] = (alpha, background)
            row[method] = scores
        if name == "hard":
            row["bounds"] = truth_bounds(truth)
        case_picture(truth, outputs, out / f"{case.name}.png")
        results.append(row)
        print(f"[{name}] {case.name:<21} " + "  ".join(
            f"{key} {_cells(row, key)}" for key in ("J", "F", "hole_psnr", "plate_psnr", "leak", "fps")), flush=True)
    means = {method: {key: _mean([row[method][key] for row in results]) for key in FORMATS} for method in METHODS}
    if name == "hard":
        means["bounds"] = {key: _mean([row["bounds"][key] for row in results]) for key in BOUND_FORMATS}
    return results, means


def print_table(name: str, cases, results: list[dict], means: dict, keys) -> None:
    size = f"{cases[0].size[0]}x{cases[0].size[1]}, {cases[0].frames} frames" if cases else ""
    print(f"\n{name} cases:\n")
    print(f"| case ({size}) | " + " | ".join(HEADINGS[key] for key in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for row in results:
        print(f"| {row['case']} | " + " | ".join(_cells(row, key) for key in keys) + " |")
    print("| **mean** | " + " | ".join(_cells(means, key, bold=True) for key in keys) + " |")
    if "bounds" not in means:
        return
    print(f"\n{name} cases, what the truth allows (`plate_ceiling`: the default restorer given the true matte and "
          "shadow; `filmed_bound`: each pixel's best sample among the frames that film its scene point, chosen by "
          "the truth):\n")
    print("| case | " + " | ".join(BOUND_HEADINGS.values()) + " |")
    print("|---" * (len(BOUND_FORMATS) + 1) + "|")
    for label, bounds in [(row["case"], row["bounds"]) for row in results] + [("**mean**", means["bounds"])]:
        print(f"| {label} | " + " | ".join(_show(bounds[key], digits) for key, digits in BOUND_FORMATS.items()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("easy", "hard", "both"), default="both", help="which cases (default: both)")
    parser.add_argument("--out", default="bench_out/split_quality")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all of the set)")
    parser.add_argument("--frames", type=int, default=None, help="frames per case (default: each case's own)")
    parser.add_argument("--no-real", action="store_true", help="skip the real sample clips")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    chosen = {name: cases for name, cases in SETS.items() if args.set in (name, "both")}
    if args.cases:
        wanted = args.cases.split(",")
        chosen = {name: tuple(case for case in cases if case.name in wanted) for name, cases in chosen.items()}
    if args.frames:
        chosen = {name: tuple(replace(case, frames=args.frames) for case in cases) for name, cases in chosen.items()}

    report, tables = {}, []
    for name, cases in chosen.items():
        if not cases:
            continue
        results, means = run_set(name, cases, out)
        report[name] = {"cases": results, "mean": means}
        tables.append((name, cases, results, means))
    real = [] if args.no_real else split_real_clips(out)
    seconds = time.perf_counter() - started
    machine = {"cores": len(os.sched_getaffinity(0)), "threads": thread_count(), "cpu": platform.processor()}
    (out / "results.json").write_text(json.dumps(_jsonable({**report, "real_clips": real, "seconds": seconds,
                                                            "machine": machine}), indent=2) + "\n")

    for name, cases, results, means in tables:
        print_table(name, cases, results, means, EASY_KEYS if name == "easy" else HARD_KEYS)
    print(f"(in brackets, same run: {' / '.join(OTHERS)}; the default's matting is {DEFAULT_MATTING}; shadow "
          "columns: cases with a shadow only)")
    for row in real:
        print(f"real clip {row['clip']} from frame {row['start']}: {row['frames']} frames at "
              f"{row['size'][0]}x{row['size'][1]}, fg_ratio {row['fg_ratio']:.3f}, "
              f"passed {row['filters']['passed']} {row['filters']['reason']}, {row['seconds']:.1f} s; "
              f"\"{row['caption']}\"")
    print(f"{machine['cores']} cores, {machine['threads']} threads per split (SPLITMERGE_THREADS); pictures and "
          f"results.json in {out}; {seconds:.0f} s in all")


if __name__ == "__main__":
    main()
