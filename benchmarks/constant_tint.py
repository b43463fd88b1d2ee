"""What an input-independent tint buys on a benchmark: copy-paste with one fixed colour map for every subject.

    .venv/bin/python benchmarks/constant_tint.py --bench B48 [--gain 0.55,0.51,0.51] [--offset 0.20,0.17,0.12]
                                                 [--out bench_out/constant_tint]

Registers a method ``constant-tint`` (the subject placed exactly as copy-paste places it, its premultiplied
colour c in [0, 1] mapped to gain * c + offset * alpha per channel, as a warp Composer's colour map is applied,
`merge.warp.apply_warp`) and scores it next to copy-paste by the honest protocol (`splitmerge evaluate`). The
default map is the one the stop-31 `cpu-small-drawn` model (docs/training.md) chose for almost every input, on
synthetic and real cases alike: a gain near 0.5 and a warm offset. Where this baseline matches a Composer's
colour or effects-ring gain over copy-paste, the Composer's gain is a prior over the training scenes' light, not
a reading of the scene.
"""

from __future__ import annotations

import argparse

import numpy as np

from splitmerge.merge.compose import ComposeInputs, Composite, over, register_method


def triple(text: str) -> np.ndarray:
    values = [float(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated numbers (r,g,b)")
    return np.array(values, np.float32)


def constant_tint(gain: np.ndarray, offset: np.ndarray):
    """The ``constant-tint`` method for this map: gain (3,), offset (3,) in [0, 1] colour units."""

    def method(inputs: ComposeInputs) -> Composite:
        subjects = []
        for foreground, alpha in inputs.subjects:
            colour = foreground.astype(np.float32) / 255 * gain + offset * alpha[..., None]
            colour = np.minimum(np.clip(colour, 0, None), alpha[..., None])  # premultiplied: never above alpha
            subjects.append((np.rint(colour * 255).astype(np.uint8), alpha))
        result = over(inputs, subjects)
        result.meta = {"gain": gain.tolist(), "offset": offset.tolist()}
        return result

    return method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--gain", type=triple, default=triple("0.55,0.51,0.51"))
    parser.add_argument("--offset", type=triple, default=triple("0.20,0.17,0.12"))
    parser.add_argument("--out", default="bench_out/constant_tint")
    args = parser.parse_args()
    from splitmerge.eval.evaluate import evaluate, paired_difference

    register_method("constant-tint")(constant_tint(args.gain, args.offset))
    metrics = evaluate(args.bench, ["constant-tint", "copy-paste"], args.out)
    for name in ("colour_error", "light_error", "contrast_error", "ring_psnr", "effects_psnr", "bg_psnr"):
        paired = paired_difference(metrics["rows"], name, "constant-tint", "copy-paste")
        if not paired["cases"]:
            continue
        low, high = paired["ci95"]
        print(f"{name}: constant-tint - copy-paste {paired['mean']:+.3f} [{low:+.3f}, {high:+.3f}]")


if __name__ == "__main__":
    main()
