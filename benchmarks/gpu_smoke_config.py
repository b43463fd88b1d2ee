"""The two Python halves of benchmarks/gpu_smoke.sh: a preset turned into its smoke-test config, and two runs'
losses compared (with each run's seconds per step and peak memory printed).

    python benchmarks/gpu_smoke_config.py PRESET OUT.yaml [--cpu 1] [--layers N] [--text-cache DIR]
    python benchmarks/gpu_smoke_config.py --compare STRAIGHT_RUN RESUMED_RUN [--label TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from splitmerge.merge.train import preset_path

STEPS, CHECKPOINT_AT = 6, 3
CPU_FRAMES, CPU_SIZE = 9, (32, 48)   # 8k+1 frames (CogVideoX's VAE; Wan's takes 4k+1), sides multiples of 16


def smoke_config(preset: str, cpu: bool, layers: int, text_cache: str | None) -> dict:
    """`preset` with random weights, 6 steps checkpointed every 3, one validation clip sampled in 2 steps at the
    end; on a CPU: small clips, fp32, no DataLoader workers (CogVideoX-I2V's learned position embeddings are
    sized to the clips)."""
    record = yaml.safe_load(preset_path(preset).read_text())
    record.update(random_init=True, random_init_layers=layers or None, max_steps=STEPS,
                  checkpoint_every=CHECKPOINT_AT, validate_every=STEPS, validation_clips=1, validation_steps=2,
                  warmup_steps=2, keep_last=2, text_cache=text_cache or True)
    if cpu:
        record.update(frames=CPU_FRAMES, size=list(CPU_SIZE), mixed_precision="no", num_workers=0)
        composer = record["composer"]
        if composer["backbone"] == "cogvideox":
            latent = {"sample_height": CPU_SIZE[0] // 8, "sample_width": CPU_SIZE[1] // 8,
                      "sample_frames": CPU_FRAMES}
            composer["backbone_config"] = {**composer.get("backbone_config", {}), **latent}
    return record


def compare(straight: Path, resumed: Path, label: str, tolerance: float = 0.0) -> int:
    """0 when the resumed run logged the straight run's losses step for step, equal within `tolerance`
    (relative; 0: exactly), else 1. Prints both runs' speed and memory."""
    def losses(run: Path) -> list[tuple[int, float]]:
        return [(row["step"], row["loss"]) for row in map(json.loads, (run / "log.jsonl").read_text().splitlines())]

    first, second = losses(straight), losses(resumed)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (straight, resumed)]
    same = summaries[1]["resumed_from"] == CHECKPOINT_AT and len(first) == len(second) == STEPS and all(
        a == c and abs(b - d) <= tolerance * abs(b) for (a, b), (c, d) in zip(first, second, strict=True))
    for name, summary in zip(("straight", "resumed"), summaries, strict=True):
        print(f"{label} {name}: {summary['processes']} process(es), sharded {summary['sharded']}, "
              f"{summary['seconds_per_step']} s/step, peak {summary['peak_memory_gib']} GiB "
              f"({summary['peak_memory_of']}), last loss {summary['loss']:.6f}")
    print(f"{label}: losses {'equal' if same else 'DIFFER'} (tolerance {tolerance}) over {len(first)} steps: "
          f"{[round(loss, 6) for _, loss in first]}")
    if not same:
        print(f"{label}: resumed {[round(loss, 6) for _, loss in second]}", file=sys.stderr)
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs=2)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--label", default="")
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--layers", type=int, default=0)
    parser.add_argument("--text-cache", default=None)
    parser.add_argument("--tolerance", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(Path(args.paths[0]), Path(args.paths[1]), args.label, args.tolerance)
    record = smoke_config(args.paths[0], bool(args.cpu), args.layers, args.text_cache)
    Path(args.paths[1]).write_text(yaml.safe_dump(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
