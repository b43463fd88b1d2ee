"""Train the matting network (`matting_net`) on examples from `data.matting_data`.

    python -m splitmerge.decompose.matting_train --data SHARDS -o OUT [--make 320 [--data-seed 1]] [--steps 4000]
                                                 [--batch 16] [--seed 0] [--widths 8,16,32,64]

``--make N`` first writes N training clips' shards into SHARDS (resumable; about 2 s a clip on 2 cores). The
last `VALIDATION_SHARDS` shards are held out and scored at the end (and every `--every` steps): J (IoU at 0.5)
of the network's matte and of the coarse one it started from, and the gain's mean absolute error where the true
shadow is. Patches of `PATCH` px are cut around the subject (and sometimes anywhere), flipped at random; the
loss is L1 + binary cross-entropy on alpha and L1 on the gain where the background shows (true alpha < 1),
shadow and shadow-free pixels weighted alike.
bf16 autocast on the CPU. Writes OUT/matting.safetensors, OUT/config.json (with the training record) and
OUT/training.json (the loss and validation curve). Deterministic for a seed on one machine.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from ..atomic import atomic_file
from ..data.matting_data import REAL_SUBJECTS, generate, load_shards
from .matting_net import GAIN_BIAS, GAIN_MIN, MattingConfig, MattingNet, pad_to_multiple, save_matting

PATCH = 128
VALIDATION_SHARDS = 20
SUBJECT_CROPS = 0.85   # share of patches centred on the subject, its shadow or the coarse matte
SHADOW_GAIN = 0.97     # true gain below this is shadow (the gain loss balances it against the rest)


def to_tensors(arrays: dict, index) -> tuple[torch.Tensor, ...]:
    """(frame, plate, coarse, alpha, gain) float32 tensors (N, C, H, W) in [0, 1] from uint8 examples."""
    def image(name):
        return torch.from_numpy(arrays[name][index]).permute(0, 3, 1, 2).float() / 255

    def plane(name):
        return torch.from_numpy(arrays[name][index]).unsqueeze(1).float() / 255

    return image("frame"), image("plate"), plane("coarse"), plane("alpha"), plane("gain")


class PatchSampler:
    """Random training patches from in-memory examples (`load_shards`), deterministic for a seed."""

    def __init__(self, arrays: dict, patch: int = PATCH, seed: int = 0):
        self.arrays = arrays
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        count, height, width = arrays["alpha"].shape
        self.size = (height, width)
        interest = (arrays["alpha"] > 25) | (arrays["coarse"] > 25) | (arrays["gain"] < 240)
        self.points = [np.argwhere(frame[::4, ::4]) * 4 for frame in interest]

    def batch(self, size: int) -> tuple[torch.Tensor, ...]:
        height, width = self.size
        half = self.patch // 2
        crops = []
        for _ in range(size):
            index = int(self.rng.integers(len(self.points)))
            points = self.points[index]
            if len(points) and self.rng.random() < SUBJECT_CROPS:
                y, x = points[int(self.rng.integers(len(points)))] + self.rng.integers(-half // 2, half // 2 + 1, 2)
            else:
                y, x = self.rng.integers(0, height), self.rng.integers(0, width)
            top = int(np.clip(y - half, 0, height - self.patch))
            left = int(np.clip(x - half, 0, width - self.patch))
            crops.append((index, top, left, bool(self.rng.random() < 0.5)))
        parts = []
        for name in ("frame", "plate", "coarse", "alpha", "gain"):
            stack = np.stack([self.arrays[name][i, top:top + self.patch, left:left + self.patch]
                              for i, top, left, _ in crops])
            flips = np.array([flip for *_, flip in crops])
            stack[flips] = stack[flips][:, :, ::-1]
            parts.append(stack)
        arrays = dict(zip(("frame", "plate", "coarse", "alpha", "gain"), parts, strict=True))
        return to_tensors(arrays, slice(None))


def matting_loss(model: MattingNet, frame, plate, coarse, alpha, gain) -> tuple[torch.Tensor, dict]:
    """L1 + BCE on alpha, L1 on the gain where the background shows; (loss, parts as floats)."""
    logits = model.logits(frame, plate, coarse).float()
    predicted = torch.sigmoid(logits[:, :1])
    alpha_l1 = (predicted - alpha).abs().mean()
    alpha_bce = functional.binary_cross_entropy_with_logits(logits[:, :1], alpha)
    predicted_gain = GAIN_MIN + (1 - GAIN_MIN) * torch.sigmoid(logits[:, 1:] + GAIN_BIAS)
    # Shadows cover a few percent of the visible background: their error and the rest's weigh the same, or
    # the gain learns to say "no shadow" everywhere.
    error = (predicted_gain - gain).abs() * (1 - alpha)
    shadow = (gain < SHADOW_GAIN).float()
    gain_l1 = 0.5 * ((error * shadow).sum() / shadow.sum().clamp_min(1)
                     + (error * (1 - shadow)).sum() / (1 - shadow).sum().clamp_min(1))
    loss = alpha_l1 + alpha_bce + 2 * gain_l1
    return loss, {"alpha_l1": alpha_l1.item(), "alpha_bce": alpha_bce.item(), "gain_l1": gain_l1.item()}


@torch.no_grad()
def validate(model: MattingNet, arrays: dict, batch: int = 8) -> dict:
    """On whole frames: J of the network's matte and of the coarse one, SAD per frame, gain error in the shadow."""
    model.eval()
    scores = {"J": [], "J_coarse": [], "sad": [], "sad_coarse": [], "gain_mae": [], "gain_mae_none": []}
    for start in range(0, len(arrays["alpha"]), batch):
        frame, plate, coarse, alpha, gain = to_tensors(arrays, slice(start, start + batch))
        (frame_p, plate_p, coarse_p), (height, width) = pad_to_multiple(frame, plate, coarse)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            predicted, predicted_gain = model(frame_p, plate_p, coarse_p)
        predicted = predicted.float()[..., :height, :width]
        predicted_gain = predicted_gain.float()[..., :height, :width]
        for i in range(len(alpha)):
            truth = alpha[i, 0] > 0.5
            for key, guess in (("J", predicted[i, 0]), ("J_coarse", coarse[i, 0])):
                union = (truth | (guess > 0.5)).sum()
                scores[key].append(1.0 if union == 0 else float((truth & (guess > 0.5)).sum() / union))
            scores["sad"].append(float((predicted[i, 0] - alpha[i, 0]).abs().sum()))
            scores["sad_coarse"].append(float((coarse[i, 0] - alpha[i, 0]).abs().sum()))
            shadow = (gain[i, 0] < 0.9) & (alpha[i, 0] < 0.1)
            if shadow.any():
                scores["gain_mae"].append(float((predicted_gain[i, 0] - gain[i, 0]).abs()[shadow].mean()))
                scores["gain_mae_none"].append(float((1 - gain[i, 0])[shadow].mean()))
    model.train()
    return {key: float(np.mean(values)) if values else math.nan for key, values in scores.items()}


def train_matting(data: str | Path, out: str | Path, steps: int = 4000, batch: int = 16, seed: int = 0,
                  widths=(8, 16, 32, 64), learning_rate: float = 2e-3, every: int = 500, log=print) -> dict:
    """Train on the shards in `data` (all but the last `VALIDATION_SHARDS`), save to `out`; returns the record."""
    log = log or (lambda *_: None)
    torch.manual_seed(seed)
    shards = sorted(Path(data).glob("*.npz"))
    held_out = min(VALIDATION_SHARDS, max(1, len(shards) // 5))
    train_arrays = load_shards(shards[:-held_out])
    valid_arrays = load_shards(shards[-held_out:])
    log(f"{len(train_arrays['alpha'])} training frames from {len(shards) - held_out} clips, "
        f"{len(valid_arrays['alpha'])} held out from {held_out}")
    sampler = PatchSampler(train_arrays, seed=seed)
    model = MattingNet(MattingConfig(widths=tuple(widths)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min((step + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(step / steps, 1.0)))))  # linear warm-up, then a cosine to zero
    curve, checks, started = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        frame, plate, coarse, alpha, gain = sampler.batch(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, parts = matting_loss(model, frame, plate, coarse, alpha, gain)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        curve.append({"step": step, "loss": loss.item(), **parts})
        if step % every == 0 or step == steps:
            check = {"step": step, "seconds": time.perf_counter() - started, **validate(model, valid_arrays)}
            checks.append(check)
            recent = np.mean([row["loss"] for row in curve[-every:]])
            log(f"step {step}: loss {recent:.4f}; held out J {check['J']:.3f} (coarse {check['J_coarse']:.3f}), "
                f"SAD {check['sad']:.0f} ({check['sad_coarse']:.0f}), shadow gain error {check['gain_mae']:.3f} "
                f"({check['gain_mae_none']:.3f} with none); {check['seconds']:.0f} s")
    record = {"steps": steps, "batch": batch, "patch": PATCH, "seed": seed, "learning_rate": learning_rate,
              "training_frames": int(len(train_arrays["alpha"])), "held_out_frames": int(len(valid_arrays["alpha"])),
              "training_clips": len(shards) - held_out, "held_out_clips": held_out, "final": checks[-1],
              "seconds": time.perf_counter() - started}
    out = Path(out)
    save_matting(model, out, {"training": record})
    (out / "training.json").write_text(json.dumps({"record": record, "checks": checks, "curve": curve[::10]},
                                                  indent=1) + "\n")
    plot_training(out / "training.json", out / "training.png")
    return record


def plot_training(record: str | Path, picture: str | Path) -> None:
    """A PNG of a `training.json`: the training loss (moving mean) and the held-out J of the network against the
    coarse matte it started from. Needs matplotlib (the ``data`` extra); without it, nothing is drawn."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(record).read_text())
    steps = np.array([row["step"] for row in data["curve"]])
    losses = np.array([row["loss"] for row in data["curve"]])
    window = max(1, len(losses) // 25)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    left.plot(steps[window - 1:], smooth, color="#222", linewidth=1.2)
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_title("training loss (moving mean)", fontsize=9)
    checks = data["checks"]
    right.plot([c["step"] for c in checks], [c["J"] for c in checks], "o-", color="#3b7dd8", label="network")
    right.plot([c["step"] for c in checks], [c["J_coarse"] for c in checks], "--", color="#999",
               label="coarse matte (its input)")
    right.set_xlabel("step")
    right.set_title("held-out clips: J (IoU)", fontsize=9)
    right.legend(fontsize=8)
    figure.tight_layout()
    with atomic_file(picture) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of training shards (data.matting_data)")
    parser.add_argument("-o", "--out", required=True, help="folder for the trained network")
    parser.add_argument("--make", type=int, default=0, help="first write this many training clips' shards")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="training seed (patches, initial weights)")
    parser.add_argument("--data-seed", type=int, default=None, help="seed of the clips --make writes (default: --seed)")
    parser.add_argument("--widths", default="8,16,32,64", help="channels of the four levels")
    parser.add_argument("--real-subjects", type=float, default=REAL_SUBJECTS,
                        help="share of --make clips whose subject is cut from a sample clip (data.cutouts)")
    parser.add_argument("--every", type=int, default=500, help="validate every N steps")
    args = parser.parse_args(argv)
    if args.make:
        generate(args.data, args.make, seed=args.seed if args.data_seed is None else args.data_seed,
                 real_subjects=args.real_subjects)
    train_matting(args.data, args.out, steps=args.steps, batch=args.batch, seed=args.seed,
                  widths=tuple(int(w) for w in args.widths.split(",")), every=args.every)


if __name__ == "__main__":
    main()
