"""How well a trained Composer denoises at each noise level (flow objective), on held-out clips.

    .venv/bin/python benchmarks/denoise_levels.py --model RUN/model --data DATASET [--clips 8]

For each noise level s, the true clip is noised (x_s = (1 - s) x0 + s e) and the model's clean estimate is
compared with the truth: x0 MSE (latent = pixel units for the pixel codec, [-1, 1]) and, for output ``layer``,
the placement IoU of its matte with the true subject's. The baseline in the same run is the copy-paste of the
same (transformed) inputs. A healthy denoiser's error falls as s falls; one whose error rises again at small s
was not trained there (what made the first cpu-small runs sample mush; see the cpu-small preset).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved Composer (flow objective)")
    parser.add_argument("--data", required=True, help="a Dataset folder (its val/test split, else train)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from splitmerge.data.torch_dataset import collate_samples, held_out_dataset, plain_captions
    from splitmerge.video.transforms import AugmentConfig
    from splitmerge.eval.metrics import mask_iou
    from splitmerge.merge.composer import Composer

    model = Composer.from_pretrained(args.model).eval()
    if model.config.objective != "flow":
        raise SystemExit("denoise_levels: a flow Composer is needed")
    frames, size = model.config.sample_frames, model.config.sample_size
    # The honest protocol (docs/cli.md): flip p 0.5, captions that say what the input as given shows.
    data = held_out_dataset(args.data, "train", frames=frames, size=size, seed=args.seed + 1,
                            augment=AugmentConfig(flip_p=0.5))
    if data is None:
        raise SystemExit(f"denoise_levels: {args.data} has no ok clips")
    batch = collate_samples([data[i] for i in range(min(args.clips, len(data)))])
    batch["caption"] = plain_captions(batch, [row["fps"] for row in data.rows])
    count = len(batch["id"])
    generator = torch.Generator().manual_seed(args.seed)
    layered = model.layered
    rows = []
    with torch.no_grad():
        conditions = model.conditions(batch["foreground"], batch["alpha"], batch["background"])
        votes, _ = model.read_scene(batch["foreground"], batch["alpha"], batch["background"], conditions)
        estimator = model.estimator(batch["foreground"], batch["alpha"], batch["background"], hard=True) \
            if layered else None
        text = model.encode_text(list(batch["caption"]))
        truth = model.codec.encode(batch["video"])
        noise = torch.randn(truth.shape, generator=generator)
        # premultiplied over the background in pixel units, written for [-1, 1] tensors (black is -1)
        copy = batch["foreground"] + (1 - batch["alpha"]) * (batch["background"] + 1)
        copy_mse = float(((model.codec.encode(copy) - truth) ** 2).mean())
        target = batch["alpha_target"][:, 0].numpy()
        for level in (0.95, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05, 0.02):
            noisy = (1 - level) * truth + level * noise
            raw = model.predict(noisy, conditions, torch.full((count,), level * model.config.train_timesteps), text,
                                votes)
            if layered:
                estimate, matte = estimator(raw)
                pixels = model.matte_pixels(matte)[:, 0].numpy()
                iou = float(np.mean([mask_iou(pixels[i], target[i]) for i in range(count)]))
            else:
                estimate, iou = noisy - level * raw, None
            rows.append({"level": level, "x0_mse": round(float(((estimate - truth) ** 2).mean()), 5),
                         "matte_iou": None if iou is None else round(iou, 3)})
    copy_iou = float(np.mean([mask_iou(batch["alpha"][i, 0].numpy(), target[i]) for i in range(count)]))
    print(json.dumps({"model": args.model, "clips": count, "copy_paste": {"x0_mse": round(copy_mse, 5),
                                                                         "matte_iou": round(copy_iou, 3)}}))
    print("| noise level | x0 MSE | matte IoU |\n|---|---|---|")
    for row in rows:
        print(f"| {row['level']} | {row['x0_mse']:.5f} | {row['matte_iou'] if row['matte_iou'] is not None else '-'} |")
    print(f"| copy-paste | {copy_mse:.5f} | {copy_iou:.3f} |")


if __name__ == "__main__":
    main()
