"""Training throughput of the Composer presets: step time, samples/s and model FLOP utilisation (MFU).

    .venv/bin/python benchmarks/train_throughput.py [--steps 10] [--presets cpu-tiny,cpu-small]
                                                    [--precisions fp32,bf16] [--compile]

Measures in this one run: the machine's matmul peak (best of several 2048x2048 fp32 and bf16 matmuls), then per
preset a training step on a batch of the preset's shape (random clips, so data loading is not counted: see
`splitmerge train`'s log for end-to-end seconds): forward + backward + AdamW, best and median of `--steps` after
2 warm-up steps, in each of `--precisions` (fp32; bf16: the same step under CPU bf16 autocast, what
`mixed_precision: bf16` runs). FLOPs per step are counted by torch's FlopCounterMode on one fp32 step; MFU = FLOPs
per second of the median step / the fp32 peak (a CPU without fast bf16 trains in fp32), and for bf16 also / the
bf16 peak (the CPU presets' `mixed_precision: auto` trains under bf16 autocast where it is fast: judge a bf16 step
by both figures). With `--compile` each is measured again with the backbone's blocks compiled (`TrainConfig.compile`,
`merge.backbones.compile_blocks`; the compile's own seconds are printed, not counted in the step), the uncompiled
step in the same run as its baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from splitmerge.merge.backbones import compile_blocks
from splitmerge.merge.composer import Composer, ComposerConfig
from splitmerge.merge.precision import matmul_rate
from splitmerge.merge.train import TrainConfig, preset_path

PEAK_SIZE = 2048  # the matmul the peak is measured on (the precision probe uses a small one)


def fake_batch(config: TrainConfig) -> dict:
    b, t, (h, w) = config.batch_size, config.frames, config.size
    alpha = torch.zeros(b, 1, t, h, w)
    alpha[..., h // 4: h // 2, w // 4: w // 2] = 1
    return {"video": torch.rand(b, 3, t, h, w) * 2 - 1, "foreground": torch.rand(b, 3, t, h, w) * 2 - 1,
            "alpha": alpha, "alpha_target": alpha, "background": torch.rand(b, 3, t, h, w) * 2 - 1,
            "caption": ["a subject walks across the ground"] * b}


def measure(name: str, steps: int, peak: float, precision: str = "fp32", bf16_peak: float | None = None,
            compiled: bool = False) -> dict:
    config = TrainConfig.load(preset_path(name))
    torch.manual_seed(0)
    model = Composer(ComposerConfig(**config.composer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    batch = fake_batch(config)
    generator = torch.Generator().manual_seed(0)

    def step(autocast: bool = precision == "bf16"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model.loss(batch, generator)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(autocast=False)
    flops = counter.get_total_flops()
    if compiled and not compile_blocks(model.transformer):
        raise SystemExit("--compile: no C++ compiler found for TorchInductor")
    started = time.perf_counter()
    step()
    first = time.perf_counter() - started
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    tokens = model.codec.latent_shape(config.frames, *config.size)
    patch = config.composer["backbone_config"].get("patch_size", [1, 2, 2])
    sequence = tokens[1] // patch[0] * (tokens[2] // patch[1]) * (tokens[3] // patch[2])
    return {"preset": name, "precision": precision, "compiled": compiled, "first_step_seconds": first,
            "batch": config.batch_size, "frames": config.frames,
            "size": list(config.size),
            "tokens_per_clip": sequence, "parameters": sum(p.numel() for p in model.parameters()),
            "step_seconds_median": median, "step_seconds_best": min(times),
            "samples_per_second": config.batch_size / median, "gflop_per_step": flops / 1e9,
            "mfu_fp32": flops / median / 1e9 / peak,
            "mfu_bf16": flops / median / 1e9 / bf16_peak if precision == "bf16" and bf16_peak else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--presets", default="cpu-tiny,cpu-small")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true", help="also measure with the blocks compiled")
    args = parser.parse_args()
    fp32, bf16 = (matmul_rate(dtype, size=PEAK_SIZE, repeats=5) for dtype in (torch.float32, torch.bfloat16))
    print(f"matmul peak: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s (2048^2, best of 5)", flush=True)
    rows = [measure(name, args.steps, fp32, precision, bf16, compiled) for name in args.presets.split(",")
            for precision in args.precisions.split(",") for compiled in ((False, True) if args.compile else (False,))]
    print(json.dumps({"peak_gflops": {"fp32": fp32, "bf16": bf16}, "presets": rows}, indent=2))
    print("\n| preset | precision | compiled (first step s) | batch x frames x size | tokens/clip | params | step (s) "
          "| samples/s | GFLOP/step | MFU vs fp32 peak | MFU vs bf16 peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bf16_mfu = f"{100 * r['mfu_bf16']:.1f}%" if r["mfu_bf16"] is not None else "-"
        compiled = f"yes ({r['first_step_seconds']:.0f})" if r["compiled"] else "no"
        shape = f"{r['batch']} x {r['frames']} x {r['size'][0]}x{r['size'][1]}"
        print(f"| {r['preset']} | {r['precision']} | {compiled} | {shape} | "
              f"{r['tokens_per_clip']} | {r['parameters'] / 1e6:.2f} M | {r['step_seconds_median']:.3f} | "
              f"{r['samples_per_second']:.2f} | {r['gflop_per_step']:.1f} | {100 * r['mfu_fp32']:.1f}% | {bf16_mfu} |")


if __name__ == "__main__":
    main()
