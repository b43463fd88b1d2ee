"""What the synthetic benchmark's bars allow: copy-paste's subject put back by parts of the augmentation's exact
inverse, with and without the scene's true shadow cast from where it lands. Oracles, not methods: they read
the truth (the case's recorded transform, the scene's light) that no method sees.

    .venv/bin/python benchmarks/truth_ceilings.py --bench B48 [--picture ceilings.jpg]

A synthetic case's subject layer is the truth's, transformed as in training (`video.transforms.apply_params`:
flip, then the resized crop x' = s (x - c) + c + d, then colour jitter). Placements, each the input layer
moved by the inverse of some of that:

- ``copy-paste``: where it is given;
- ``mirror``: the flip undone (the frame mirrored back), what the scene's light can tell (issue 18's reader);
- ``no-sideways``: flip, zoom and vertical shift undone, the crop's sideways shift d_x left: all the scene can
  tell (the feet on the ground give the height and depth; nothing in a clean background says how far sideways
  the subject stood);
- ``exact``: the whole inverse (the colour jitter left: it has no exact inverse).

Each with ``+shadow``: the background under the subject's shadow cast from where it lands, by the scene's own
light (`data.shadows.ground_shadow` with the scene's shear, squash, darkness and penumbra), as the truth's was.
Printed: each metric of issue 18's bars paired to copy-paste on the same cases (mean, 95% bootstrap interval).
"""

from __future__ import annotations

import argparse

import numpy as np

from splitmerge.data.shadows import ground_shadow
from splitmerge.data.synthetic import MIN_PENUMBRA, PENUMBRA, draw_params
from splitmerge.eval.bench import BenchCase, load_bench
from splitmerge.eval.evaluate import ground_of, paired_difference, truth_metrics
from splitmerge.eval.metrics import depth_scale_error
from splitmerge.video.layers import composite
from splitmerge.video.transforms import affine, hflip

PLACEMENTS = ("copy-paste", "mirror", "no-sideways", "exact")
METRICS = ("placement_iou", "colour_error", "ring_psnr", "effects_psnr", "depth_scale_error")
RATIOS = ("colour_error", "depth_scale_error")  # issue 18's bars on these are ratios to copy-paste's


def put_back(foreground: np.ndarray, alpha: np.ndarray, transform: dict, placement: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """The input layer, (T, H, W, 3) uint8 and (T, H, W) float, with the `placement`'s part of its recorded
    augmentation `transform` undone (module docstring)."""
    if placement == "copy-paste":
        return foreground, alpha
    crop = transform.get("crop")
    if placement != "mirror" and crop:
        scale, (dx, dy) = float(crop["scale"]), crop["shift"]
        sideways = -dx / scale if placement == "exact" else 0.0
        foreground, alpha = affine(foreground, alpha, 1 / scale, [sideways, -dy / scale], crop["center"])
    if transform.get("flip"):
        foreground, alpha = hflip(foreground, alpha)
    return foreground, alpha


def true_shadow_gain(alpha: np.ndarray, seed: int, horizon: float) -> np.ndarray:
    """(T, H, W) float32 gains: the shadow a subject with matte `alpha` (T, H, W) casts from its feet (each frame's
    lowest solid row) under the light of synthetic scene `seed`, with the scene's penumbra for its height."""
    frames, height, width = alpha.shape
    params = draw_params(seed, frames, (height, width))
    gains = np.ones(alpha.shape, np.float32)
    for t in range(frames):
        rows = np.flatnonzero((alpha[t] > 0.5).any(axis=1))
        if len(rows):
            blur = MIN_PENUMBRA + PENUMBRA * float(rows[-1] - rows[0] + 1)
            dark = ground_shadow(alpha[t], (0.0, float(rows[-1])), params.shear, params.squash, blur, horizon)
            gains[t] = 1 - params.darkness * dark
    return gains


def case_results(case: BenchCase) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One row of scores per placement, with and without the true shadow, of one synthetic case, and each
    result's frames (T, H, W, 3) uint8 by method, with the truth's as ``truth``."""
    layer, background = case.foreground(), case.background().frames
    truth, truth_alpha = case.truth_video().frames, case.truth_alpha()
    count = min(len(background), layer.num_frames, len(truth))
    background, truth, truth_alpha = background[:count], truth[:count], truth_alpha[:count]
    ground = ground_of(case.placement)
    rows, frames = [], {"truth": truth}
    for placement in PLACEMENTS:
        foreground, alpha = put_back(layer.foreground[:count], layer.alpha[:count], case.transform, placement)
        gains = true_shadow_gain(alpha, int(case.source["synthetic_seed"]), float(case.placement["horizon"]))
        for name, gain in ((placement, None), (placement + "+shadow", gains)):
            frames[name] = composite(foreground, alpha, background, gain)
            scores = truth_metrics(frames[name], alpha, truth, truth_alpha, background)
            if ground is not None:
                scores["depth_scale_error"] = depth_scale_error(alpha, *ground)
            rows.append({"case": case.id, "method": name, "scores": scores})
    return rows, frames


def case_rows(case: BenchCase) -> list[dict]:
    """`case_results`' scores alone."""
    return case_results(case)[0]


def picture(results: list[dict[str, np.ndarray]], path: str) -> None:
    """A JPEG grid: per case (a row) the middle frame of copy-paste, the oracles with the true shadow, the truth."""
    from splitmerge.video.preview import grid, write_jpeg

    shown = ["copy-paste", "mirror+shadow", "no-sideways+shadow", "exact+shadow", "truth"]
    rows = [[frames[name][len(frames[name]) // 2] for name in shown] for frames in results]
    write_jpeg(path, grid(rows, shown, height=3 * rows[0][0].shape[0]))


def ratio_to_baseline(rows: list[dict], metric: str, method: str, baseline: str = "copy-paste") -> float:
    """`method`'s mean `metric` over the cases where both have one, over `baseline`'s on the same cases."""
    scores = {(row["case"], row["method"]): row["scores"].get(metric) for row in rows}
    both = [case for case, name in scores if name == method
            and scores[(case, method)] is not None and scores.get((case, baseline)) is not None]
    return float(np.mean([scores[(case, method)] for case in both])
                 / max(np.mean([scores[(case, baseline)] for case in both]), 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, help="a synthetic benchmark folder (splitmerge bench make "
                                                        "synthetic)")
    parser.add_argument("--picture", help="also write a JPEG of the first cases' middle frames here")
    parser.add_argument("--picture-cases", type=int, default=4)
    args = parser.parse_args()
    record, cases = load_bench(args.bench)
    if record.get("kind") != "synthetic":
        parser.error(f"{args.bench}: a {record.get('kind')} benchmark; the ceilings need synthetic scenes")
    rows, shown = [], []
    for case in cases:
        scores, frames = case_results(case)
        rows += scores
        if len(shown) < args.picture_cases:
            shown.append(frames)
    if args.picture:
        picture(shown, args.picture)
    print(f"{len(cases)} cases; paired to copy-paste, mean [95% interval]")
    for method in [name + suffix for name in PLACEMENTS for suffix in ("", "+shadow")][1:]:
        cells = []
        for metric in METRICS:
            paired = paired_difference(rows, metric, method, "copy-paste")
            if not paired["cases"]:
                continue
            low, high = paired["ci95"]
            ratio = f" (x{ratio_to_baseline(rows, metric, method):.2f})" if metric in RATIOS else ""
            cells.append(f"{metric} {paired['mean']:+.3f} [{low:+.3f}, {high:+.3f}]{ratio}")
        print(f"{method:>20}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
