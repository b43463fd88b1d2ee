"""What a Composer's scene reader can read, and what reading it is worth, on a synthetic benchmark.

    .venv/bin/python benchmarks/scene_reader.py --data DATASET --bench BENCH [--preset cpu-small-drawn]
                                                [--model RUN/model] [--steps 3000] [--samples 4000] [--scenes 0]
                                                [--set FIELD=VALUE ...]

1. Ceilings: the placement IoU of the benchmark's input matte moved by parts of the *true* inverse of its
   augmentation (`merge.warp.inverse_targets`): none (copy-paste), the mirror alone, + the vertical shift,
   + the zoom, the whole inverse. What a perfect reader of each part would gain.
2. The reader: a fresh Composer of the preset (seeded) has its scene reader warmed up alone exactly as training
   does (`merge.train.warm_up_reader`, the preset's settings unless overridden), or a trained Composer's reader
   is read (`--model`); then how often its mirror vote (the clip's mean, with the map's flip offset) is right on
   the benchmark's cases, the baseline being the better constant answer (always or never mirror) on the same
   cases. Deterministic from the seed.
3. Its light (a drawn Composer's reader): the shadow's side (sign of the shear) and length direction (sign of
   the squash) its votes give, against the synthetic scene's (which casts the props' shadows the same way), and
   its darkness against the scene's.
4. With `--fit N`: the light `merge.light_fit.fit_light` reads off N training frames' own truth (the target a
   reader with `reader_light_weight` regresses), against the synthetic scenes' (their seeds in the manifest).
5. Its geometry: the log-zoom and vertical shift its votes give (read as a map) against the case's true inverse,
   RMSE beside the identity map's (0, copy-paste's): the depth it reads; and the depth-scale error of the input
   matte its map moves (the ground's law; the inverse's zoom is not all the inputs tell, the law is).
6. With `--data`: the reader's light on N (`--fit`, default 256) unaugmented training frames against their
   scenes' (seen scenes against the benchmark's unseen ones: does it fail to fit, or to generalise?).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml


def case_tensors(case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A benchmark case's transformed subject (1, 3, T, H, W) in [-1, 1] premultiplied, its matte (1, 1, T, H, W)
    and the background (1, 3, T, H, W)."""
    from splitmerge.data.torch_dataset import to_signed

    layers, background = case.foreground(), case.background()
    count = min(len(layers.alpha), len(background.frames))
    return (to_signed(layers.foreground[:count])[None], torch.from_numpy(layers.alpha[:count])[None, None].float(),
            to_signed(background.frames[:count])[None])


def matte_iou(moved: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames (with a subject in either) of the IoU of two mattes (T, H, W) above 0.5."""
    a, b = moved > 0.5, truth > 0.5
    scores = [(x & y).sum() / (x | y).sum() for x, y in zip(a, b, strict=True) if (x | y).any()]
    return float(np.mean(scores)) if scores else float("nan")


def true_map(transform: dict, used: tuple[str, ...], count: int, height: int, width: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts `used` ("flip", "y", "zoom", "x") of a case's true inverse (`merge.warp.inverse_targets` of its
    augmentation `transform`) as a map: (parameters (1, WARP_CHANNELS, count), mirror logit (1,)); the other parts
    are the identity's."""
    from splitmerge.merge.warp import LOG_ZOOM, SHIFT_X, SHIFT_X_MIRRORED, SHIFT_Y, WARP_CHANNELS, inverse_targets

    log_zoom, shift_x, shift_y, flipped = inverse_targets([transform], height, width)
    parameters = torch.zeros(1, WARP_CHANNELS, count)
    parameters[:, LOG_ZOOM] = float(log_zoom[0]) if "zoom" in used else 0.0
    parameters[:, [SHIFT_X, SHIFT_X_MIRRORED]] = float(shift_x[0]) if "x" in used else 0.0
    parameters[:, SHIFT_Y] = float(shift_y[0]) if "y" in used else 0.0
    return parameters, torch.tensor([10.0 if ("flip" in used and bool(flipped[0])) else -10.0])


def moved_matte(parameters: torch.Tensor, mirror: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """The matte alpha (1, 1, T, H, W) moved by a map (parameters (1, C, T), mirror logit (1,), the likelier
    side): (T, H, W)."""
    from splitmerge.merge.warp import apply_warp

    _, moved = apply_warp(parameters, mirror, alpha.expand(1, 3, -1, -1, -1).clone(), alpha, hard=True)
    return moved[0, 0].numpy()


def ceilings(cases) -> dict[str, float]:
    """Mean placement IoU of each case's input matte moved by parts of its true inverse."""
    parts = {"copy-paste": (), "mirror": ("flip",), "mirror + vertical shift": ("flip", "y"),
             "mirror + vertical shift + zoom": ("flip", "y", "zoom"), "exact inverse": ("flip", "y", "zoom", "x")}
    scores = {name: [] for name in parts}
    for case in cases:
        _, alpha, _ = case_tensors(case)
        _, _, count, height, width = alpha.shape
        truth = case.truth_alpha()[:count]
        for name, used in parts.items():
            map_ = true_map(case.transform, used, count, height, width)
            scores[name].append(matte_iou(moved_matte(*map_, alpha), truth))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def mirror_votes(model, cases) -> np.ndarray:
    """(N,) each case's mirror logit from the reader alone: its flip votes' clip mean plus the map's offset."""
    from splitmerge.merge.warp import FLIP, FLIP_OFFSET

    logits = []
    with torch.no_grad():
        for case in cases:
            votes, _ = model.read_scene(*case_tensors(case))
            logits.append(float(votes[0, FLIP].mean()) + FLIP_OFFSET)
    return np.array(logits)


def light_votes(model, cases) -> list[dict]:
    """Per case, the reader's light (`merge.warp.light_values` of its votes, clip means) beside the scene's."""
    from splitmerge.data.synthetic import draw_params
    from splitmerge.merge.light_fit import scene_agreement
    from splitmerge.merge.warp import light_values

    rows = []
    with torch.no_grad():
        for case in cases:
            foreground, alpha, background = case_tensors(case)
            votes, _ = model.read_scene(foreground, alpha, background)
            light = light_values(votes[..., 0, 0].float())
            _, _, count, height, width = alpha.shape
            scene = draw_params(int(case.source["synthetic_seed"]), count, (height, width))
            rows.append(scene_agreement(light, scene))
    return rows


def geometry_votes(model, cases) -> dict[str, tuple[float, float]]:
    """The reader's own zoom and vertical shift (its votes read as a map, `merge.warp.log_zoom` and SHIFT_Y; the
    transformer's part left out) against each case's true inverse (`inverse_targets`): per name, (RMSE over
    cases and frames, the identity map's RMSE). The depth a reader reads: what `map_readout.py` measures for a
    whole Composer, here before any joint training."""
    from splitmerge.merge.warp import SHIFT_Y, inverse_targets, log_zoom

    errors: dict[str, list[float]] = {"zoom": [], "shift_y": []}
    identity: dict[str, list[float]] = {"zoom": [], "shift_y": []}
    with torch.no_grad():
        for case in cases:
            foreground, alpha, background = case_tensors(case)
            votes, _ = model.read_scene(foreground, alpha, background)
            parameters = votes[0, :, :, 0, 0].float()  # (C, t)
            true_zoom, _, shift_y, _ = inverse_targets([case.transform], *alpha.shape[-2:])
            for name, read, truth in (("zoom", log_zoom(parameters), float(true_zoom[0])),
                                      ("shift_y", parameters[SHIFT_Y], float(shift_y[0]))):
                errors[name].append(float((read - truth).pow(2).mean()))
                identity[name].append(truth ** 2)
    return {name: (float(np.sqrt(np.mean(errors[name]))), float(np.sqrt(np.mean(identity[name]))))
            for name in errors}


def depth_votes(model, cases) -> tuple[float, float, float]:
    """Mean depth-scale error (`eval.metrics.depth_scale_error`, the ground's law) of each case's input matte
    moved by the reader's own map (its votes read as a map, its mirror), beside copy-paste's (the matte as
    given) and the true zoom and vertical shift's (an oracle): the size by depth a reader gives a Composer."""
    from splitmerge.eval.evaluate import ground_of
    from splitmerge.eval.metrics import depth_scale_error
    from splitmerge.merge.warp import FLIP, FLIP_OFFSET

    scores: dict[str, list[float]] = {"reader": [], "copy-paste": [], "true zoom and shift": []}
    with torch.no_grad():
        for case in cases:
            foreground, alpha, background = case_tensors(case)
            ground = ground_of(case.placement)
            votes, _ = model.read_scene(foreground, alpha, background)
            read = votes[:, :, :, 0, 0].float()
            maps = {"reader": (read, read[:, FLIP].mean(dim=1) + FLIP_OFFSET),
                    "true zoom and shift": true_map(case.transform, ("y", "zoom"), *alpha.shape[2:])}
            for name, map_ in maps.items():
                scores[name].append(depth_scale_error(moved_matte(*map_, alpha), *ground))
            scores["copy-paste"].append(depth_scale_error(alpha[0, 0].numpy(), *ground))
    return tuple(float(np.mean(scores[name])) for name in ("reader", "copy-paste", "true zoom and shift"))


def training_frames(data: str, count: int, size: tuple[int, int]) -> tuple[dict, list]:
    """`count` unaugmented training frames of `data` spread over its synthetic clips: (their batch, each one's
    scene parameters)."""
    from splitmerge.data.synthetic import draw_params
    from splitmerge.data.torch_dataset import StmDataset, collate_samples

    frames = StmDataset(data, split="train", frames=1, size=size, augment=None, seed=0)
    synthetic = [i for i, row in enumerate(frames.rows) if row["kind"] == "synthetic"]
    chosen = synthetic[::max(1, len(synthetic) // count)][:count]
    scenes = [draw_params(int(frames.rows[i]["seed"]), int(frames.rows[i]["num_frames"]), size) for i in chosen]
    return collate_samples([frames[i] for i in chosen]), scenes


def light_summary(light: dict[str, torch.Tensor], scenes: list) -> str:
    """How often lights (each (N, ...) over N frames) have their scenes' lean and length direction, and the
    darkness' correlation with the scenes'."""
    from splitmerge.merge.light_fit import scene_agreement

    rows = [scene_agreement({name: value[k] for name, value in light.items()}, scene)
            for k, scene in enumerate(scenes)]
    side, length = (np.mean([row[name] for row in rows]) for name in ("side_right", "length_right"))
    darkness = np.corrcoef([row["darkness"] for row in rows], [row["true_darkness"] for row in rows])[0, 1]
    return (f"lean side right {side:.3f}, length direction right {length:.3f}, darkness correlation "
            f"{darkness:+.3f}")


def fitted_light(data: str, count: int, size: tuple[int, int]) -> str:
    """The light fitted to `count` training frames of `data` (`training_frames`) against their scenes'."""
    from splitmerge.merge.light_fit import fit_light

    batch, scenes = training_frames(data, count, size)
    fitted = fit_light(batch["alpha_target"], batch["effects"])
    return f"the light fitted to {len(scenes)} training frames: {light_summary(fitted, scenes)}"


def reader_light_on_training(model, data: str, count: int, size: tuple[int, int]) -> str:
    """The reader's light on `count` training frames of `data` (`training_frames`) against their scenes' (beside
    its light on the benchmark: seen against unseen scenes)."""
    from splitmerge.merge.warp import light_values

    batch, scenes = training_frames(data, count, size)
    with torch.no_grad():
        votes, _ = model.read_scene(batch["foreground"], batch["alpha"], batch["background"])
    light = light_values(votes[..., 0, 0].float())
    return f"its light on {len(scenes)} training frames: {light_summary(light, scenes)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, help="a synthetic benchmark (splitmerge bench make synthetic)")
    parser.add_argument("--data", help="the training Dataset to warm a fresh reader up on")
    parser.add_argument("--preset", default="cpu-small-drawn")
    parser.add_argument("--model", help="read a trained Composer's reader instead of warming one up")
    parser.add_argument("--steps", type=int, help="warm-up steps (default: the preset's reader_warmup)")
    parser.add_argument("--samples", type=int, help="cached frames (default: the preset's reader_samples)")
    parser.add_argument("--scenes", type=int, help="+ fresh procedural scenes (default: the preset's reader_scenes)")
    parser.add_argument("--symmetric", choices=("on", "off"), help="override the preset's reader_symmetric")
    parser.add_argument("--fit", type=int, metavar="N", help="also fit the light to N training frames of --data")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a Composer field of the preset (YAML value), e.g. --set effects_weight=0.3")
    args = parser.parse_args()
    from splitmerge.eval.bench import load_bench
    from splitmerge.merge.train import TrainConfig, build_composer, preset_path, warm_up_reader

    _, cases = load_bench(args.bench)
    started = time.perf_counter()
    print(f"ceilings on {len(cases)} cases (placement IoU, the input matte moved by the true inverse's parts):")
    for name, score in ceilings(cases).items():
        print(f"  {name:32s} {score:.3f}")
    if args.fit:
        if not args.data:
            parser.error("--fit needs --data")
        print(fitted_light(args.data, args.fit, tuple(TrainConfig.load(preset_path(args.preset)).size)))
    if args.model:
        from splitmerge.merge.composer import Composer

        model, source = Composer.from_pretrained(args.model), args.model
    else:
        if not args.data:
            parser.error("give --data (to warm a reader up) or --model (a trained Composer with a reader)")
        config = TrainConfig.load(preset_path(args.preset), data=args.data)
        config.reader_warmup = args.steps or config.reader_warmup or 3000
        config.reader_samples = args.samples or config.reader_samples
        config.reader_scenes = config.reader_scenes if args.scenes is None else args.scenes
        config.composer = {**config.composer, "sample_frames": config.frames, "sample_size": list(config.size)}
        if args.symmetric:
            config.composer["reader_symmetric"] = args.symmetric == "on"
        for item in args.set:
            name, _, value = item.partition("=")
            config.composer[name] = yaml.safe_load(value)
        torch.manual_seed(config.seed)
        model = build_composer(config)
        record = warm_up_reader(model, config)
        source = (f"a fresh {args.preset} reader warmed up {config.reader_warmup} steps on {config.reader_samples}"
                  f" frames of {args.data} + {config.reader_scenes} fresh scenes (last loss {record['loss']:.3f})")
    if model.reader is None:
        parser.error(f"{args.model}: this Composer has no scene reader")
    flipped = np.array([bool(case.transform.get("flip")) for case in cases])
    right = (mirror_votes(model, cases) > 0) == flipped
    constant = max(flipped.mean(), 1 - flipped.mean())
    print(f"mirror read right on {right.mean():.3f} of {len(cases)} cases ({right.sum()}); the better constant "
          f"answer {constant:.3f}; {source}; {time.perf_counter() - started:.0f} s")
    print("its geometry: " + ", ".join(f"{name} RMSE {rmse:.4f} (identity map {base:.4f})"
                                       for name, (rmse, base) in geometry_votes(model, cases).items()))
    reader, copy_paste, oracle = depth_votes(model, cases)
    print(f"its map's depth-scale error {reader:.4f} (x{reader / copy_paste:.2f} copy-paste's {copy_paste:.4f}; the "
          f"true zoom and vertical shift x{oracle / copy_paste:.2f})")
    if model.config.effects_layer:
        rows = light_votes(model, cases)
        drawn, true = np.array([r["darkness"] for r in rows]), np.array([r["true_darkness"] for r in rows])
        print(f"its light: shadow side right {np.mean([r['side_right'] for r in rows]):.3f}, length direction right "
              f"{np.mean([r['length_right'] for r in rows]):.3f} (chance 0.5); darkness {drawn.mean():.3f} against "
              f"{true.mean():.3f}, correlation {np.corrcoef(drawn, true)[0, 1]:+.3f}")
        if args.data:
            print(reader_light_on_training(model, args.data, args.fit or 256, tuple(model.config.sample_size)))


if __name__ == "__main__":
    main()
