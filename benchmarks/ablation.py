"""Ablation of the Composer's recipe on the synthetic benchmark, by the honest protocol (docs/cli.md).

    .venv/bin/python benchmarks/ablation.py [--preset cpu-small-drawn] [--steps 400] [--cases 24]
                                            [--variants full no-augment ...]
                                            [--data DATASET] [--out bench_out/ablation]

Builds synthetic training scenes (at the preset's size; or takes --data) and a synthetic benchmark of held-out
seeds, trains the preset (default cpu-small) in each variant (the full recipe, without augmentation, without
the identity loss, without the drawn effects layer, without the scene reader) on the preset's own schedule and
stops every one after the same step (`train --stop-at`), then scores the raw weights of that step's checkpoint
with `splitmerge evaluate --method stm --option stm.mirror=M` (plain prompts, no mirror rule: the network alone;
M is `model`, the network's own choice, for a preset with a scene reader, else `keep`) next to the two
copy-paste baselines (evaluated once), and prints each metric's mean with its 95% bootstrap interval and the
paired difference against copy-paste. The paper's claim to check: with transformed inputs, the full recipe
beats "no augmentation" on placement IoU and colour error; this project's: the effects layer is what raises the
effects ring, and the scene reader is what places the subject. A variant whose run folder already holds that
checkpoint is not trained again, nor one whose evaluation of that checkpoint is already there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

VARIANTS = {"full": [], "no-augment": ["--no-augment"], "no-identity-loss": ["--no-identity-loss"],
            "no-effects-layer": ["--no-effects-layer"], "no-reader": ["--no-reader"],
            "no-appearance": ["--no-appearance"]}
# variants only some presets have
NEEDS = {"no-effects-layer": "effects_layer", "no-reader": "reader_width", "no-appearance": "appearance_weight"}


def run(*command: str) -> None:
    subprocess.run([sys.executable, "-m", "splitmerge.cli", *command], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=400, help="stop every variant after this step")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--data", help="an existing training Dataset at the preset's size (default: build one)")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help="default: every variant the preset has (no-effects-layer only for a drawn one, "
                             "no-reader for one with a scene reader, "
                             "no-appearance for one that learns appearance on the true geometry)")
    parser.add_argument("--mirror", choices=["keep", "model"],
                        help="stm.mirror when scoring (default: model for a preset with a scene reader, which "
                             "learnt the choice; else keep)")
    parser.add_argument("--out", default="bench_out/ablation")
    args = parser.parse_args()
    import yaml

    from splitmerge.merge.train import preset_path

    preset = yaml.safe_load(preset_path(args.preset).read_text())
    frames, (height, width) = preset["frames"], preset["size"]
    has = {name: bool(preset["composer"].get(field)) for name, field in NEEDS.items()}
    if args.variants is None:
        args.variants = [name for name in VARIANTS if has.get(name, True)]
    for name in args.variants:
        if not has.get(name, True):
            parser.error(f"variant {name}: preset {args.preset} has no {NEEDS[name]} (try cpu-small-drawn)")
    args.mirror = args.mirror or ("model" if has["no-reader"] else "keep")
    out = Path(args.out)
    data, bench = Path(args.data) if args.data else out / "scenes", out / "bench"
    if not (data / "manifest.parquet").exists():
        run("build", "-o", str(data), "--synthetic", str(args.scenes), "--frames", str(frames), "--size",
            f"{height}x{width}", "--workers", "2")
    if not (bench / "bench.json").exists():
        run("bench", "make", "synthetic", "-o", str(bench), "--cases", str(args.cases), "--frames", str(frames),
            "--size", f"{height}x{width}")
    results = {}
    baselines = out / "eval" / "baselines"
    if not (baselines / "metrics.json").exists():
        shutil.rmtree(baselines, ignore_errors=True)
        run("evaluate", "--bench", str(bench), "--method", "copy-paste", "--method", "harmonized-copy-paste",
            "-o", str(baselines))
    results["baselines"] = json.loads((baselines / "metrics.json").read_text())
    for name in args.variants:
        folder = out / "runs" / name
        checkpoint = folder / "checkpoints" / f"step-{args.steps:06d}" / "composer"
        if not (checkpoint / "composer.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
            run("train", "--preset", args.preset, "--data", str(data), "-o", str(folder), "--stop-at",
                str(args.steps), *VARIANTS[name])
        evaluation = out / "eval" / name
        if not _evaluated(evaluation, checkpoint, args.mirror):
            shutil.rmtree(evaluation, ignore_errors=True)
            run("evaluate", "--bench", str(bench), "--method", "stm", "--model", str(checkpoint), "--option",
                f"stm.mirror={args.mirror}", "-o", str(evaluation))
        results[name] = json.loads((evaluation / "metrics.json").read_text())
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, args)


def _evaluated(evaluation: Path, checkpoint: Path, mirror: str) -> bool:
    """Whether `evaluation` already holds this checkpoint's scores, by the protocol above (then it is kept)."""
    path = evaluation / "metrics.json"
    if not path.is_file():
        return False
    options = json.loads(path.read_text()).get("options", {}).get("stm", {})
    return options.get("model") == str(checkpoint) and options.get("mirror") == mirror


def _cell(entry: dict) -> str:
    return f"{entry['mean']:.3f} [{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]"


def print_table(results: dict, args) -> None:
    """The Markdown table: each metric's mean [95% interval], and per variant the paired difference against
    copy-paste on placement IoU and colour error."""
    from splitmerge.eval.evaluate import paired_difference

    metrics = ("placement_iou", "depth_scale_error", "colour_error", "light_error", "contrast_error", "ring_psnr",
               "effects_psnr", "bg_psnr")
    print(f"\n| variant ({args.preset}, {args.steps} steps, {args.cases} cases, plain prompts, "
          f"stm.mirror={args.mirror}) | "
          + " | ".join(metrics) + " | IoU - copy-paste | colour - copy-paste |")
    print("|---" * (len(metrics) + 3) + "|")
    baselines = results["baselines"]
    for method, summary in baselines["summary"].items():
        print(f"| {method} | " + " | ".join(_cell(summary[m]) for m in metrics) + " | | |")
    for name in args.variants:
        summary = results[name]["summary"]["stm"]
        rows = baselines["rows"] + results[name]["rows"]
        paired = [paired_difference(rows, m, "stm", "copy-paste") for m in ("placement_iou", "colour_error")]
        print(f"| {name} | " + " | ".join(_cell(summary[m]) for m in metrics) + " | "
              + " | ".join(f"{p['mean']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]" for p in paired) + " |")


if __name__ == "__main__":
    main()
