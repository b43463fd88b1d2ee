"""What a drawn warp Composer reads off each synthetic benchmark case, against what the case's truth says.

    .venv/bin/python benchmarks/map_readout.py --model RUN/model --bench B48 [--mirror model]

For each case the map is sampled exactly as ``stm`` samples it (plain prompt, the seed, `merge.stm`'s windows)
and compared with what the truth knows and no method sees (the case's recorded augmentation, the synthetic
scene's light, `benchmarks/truth_ceilings.py` for what each part is worth):

- the mirror: the map's choice (logit > 0) against the augmentation's flip; the rate of right choices and of
  the better constant answer;
- the inverse: log-zoom and vertical shift (`merge.warp.inverse_targets`, normalised units) per frame, RMSE of
  the map against the identity map's (0: copy-paste's);
- the light (a drawn Composer): the shadow's side (sign of shear) and length direction (sign of squash) against
  the scene's, the darkness against the scene's (mean and correlation over cases).
"""

from __future__ import annotations

import argparse

import numpy as np

from splitmerge.data.synthetic import draw_params
from splitmerge.eval.bench import load_bench
from splitmerge.merge.compose import ComposeInputs
from splitmerge.merge.light_fit import scene_agreement
from splitmerge.merge.stm import _warp_windows, load_composer
from splitmerge.merge.warp import SHIFT_Y, inverse_targets, light_values, log_zoom
from splitmerge.video.geometry import resize_frames


def case_readout(model, case, mirror: str, seed: int) -> dict:
    """The map's reading of one case next to the truth's values."""
    size = tuple(model.config.sample_size)
    layer, background = case.foreground(), case.background()
    count = min(layer.num_frames, len(background.frames))
    inputs = ComposeInputs(background.frames[:count], [(layer.foreground[:count], layer.alpha[:count])],
                           background.fps, case.prompt_for("plain"), seed=seed, options={"mirror": mirror})
    clip_map = _warp_windows(model, resize_frames(layer.foreground[:count], size),
                             resize_frames(layer.alpha[:count], size), resize_frames(background.frames[:count], size),
                             inputs)
    parameters = clip_map.parameters  # (C, T)
    height, width = layer.alpha.shape[1:3]
    true_zoom, _, shift_y, flipped = inverse_targets([case.transform], height, width)
    zoom = log_zoom(parameters)
    row = {"mirror_right": bool(clip_map.flip > 0) == bool(flipped[0]), "flipped": bool(flipped[0]),
           "zoom_error": float((zoom - true_zoom[0]).pow(2).mean()), "zoom_identity": float(true_zoom[0] ** 2),
           "shift_y_error": float((parameters[SHIFT_Y] - shift_y[0]).pow(2).mean()),
           "shift_y_identity": float(shift_y[0] ** 2)}
    if model.config.effects_layer:
        scene = draw_params(int(case.source["synthetic_seed"]), count, (height, width))
        row.update(scene_agreement(light_values(parameters[None]), scene))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved warp Composer")
    parser.add_argument("--bench", required=True, help="a synthetic benchmark folder")
    parser.add_argument("--mirror", default="model", help="stm's mirror option (model: the Composer's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    record, cases = load_bench(args.bench)
    if record.get("kind") != "synthetic":
        parser.error(f"{args.bench}: a {record.get('kind')} benchmark; the readout needs synthetic scenes")
    model = load_composer(args.model)
    if model.config.output != "warp":
        parser.error(f"{args.model}: not a warp Composer")
    rows = [case_readout(model, case, args.mirror, args.seed) for case in cases]
    flips = np.mean([row["flipped"] for row in rows])
    print(f"{len(rows)} cases; mirror right {np.mean([row['mirror_right'] for row in rows]):.3f} "
          f"(better constant answer {max(flips, 1 - flips):.3f})")
    for name in ("zoom", "shift_y"):
        rmse = np.sqrt(np.mean([row[f"{name}_error"] for row in rows]))
        identity = np.sqrt(np.mean([row[f"{name}_identity"] for row in rows]))
        print(f"{name}: RMSE {rmse:.4f} (identity map {identity:.4f})")
    if "darkness" in rows[0]:
        drawn, true = np.array([row["darkness"] for row in rows]), np.array([row["true_darkness"] for row in rows])
        print(f"shadow side right {np.mean([row['side_right'] for row in rows]):.3f}, length direction right "
              f"{np.mean([row['length_right'] for row in rows]):.3f} (chance 0.5)")
        print(f"darkness: drawn {drawn.mean():.3f} (range {drawn.min():.3f}-{drawn.max():.3f}), true "
              f"{true.mean():.3f}; correlation {np.corrcoef(drawn, true)[0, 1]:+.3f}")


if __name__ == "__main__":
    main()
