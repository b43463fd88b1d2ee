"""Split memory benchmark: peak memory of splitting N and 2N frames, streamed to a folder vs in memory.

    .venv/bin/python benchmarks/split_memory.py [--frames 200] [--out bench_out/split_memory]

Writes a 2N-frame ground-truth clip at 240x360 (a real photo under a handheld virtual camera, a real cut-out
walking slowly: `splitmerge.eval.split_truth`) to an MP4, then runs, each in a fresh process (interpreter and
imports included), `sm.split_to_folder` (streamed, window by window) and `sm.split` (the whole clip in memory)
on the first N and on all 2N frames, and prints peak RSS and frames/s. Streamed memory must stay flat as the
length doubles (it is bounded by the window, 64 frames); in memory grows with the clip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import splitmerge as sm
from splitmerge.eval.split_truth import TruthCase, render_case

PROBE = """
import json, sys, time
import splitmerge as sm
path, out, frames, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
if mode == "streamed":
    sm.split_to_folder(path, out, frames=frames, caption="benchmark")
else:
    sm.split(path, frames=frames, caption="benchmark")
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"peak_mb": peak, "fps": frames / seconds}))
"""


def measure(path: Path, out: Path, frames: int, mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, str(path), str(out), str(frames), mode],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="N (the long run splits 2N)")
    parser.add_argument("--out", default="bench_out/split_memory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    count = 2 * args.frames
    truth = render_case(TruthCase("long", "photo:rocket", "astronaut", "handheld", "slow", frames=count))
    path = sm.write_video(out / "long.mp4", sm.Video(truth.frames, truth.fps), crf=16)
    del truth

    results = {}
    for mode in ("streamed", "in memory"):
        for frames in (args.frames, count):
            results[f"{mode} {frames}"] = measure(path, out / f"layers_{frames}", frames, mode)
            print(f"{mode:<10} {frames:>5} frames: peak RSS {results[f'{mode} {frames}']['peak_mb']:.0f} MB, "
                  f"{results[f'{mode} {frames}']['fps']:.1f} frames/s", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    n = args.frames
    print(f"\n| split 240x360, {n} -> {count} frames | peak RSS (MB) | growth | frames/s ({count}) |")
    print("|---|---|---|---|")
    for mode, label in (("streamed", "streamed (`split_to_folder`)"), ("in memory", "in memory (`split`)")):
        short, long = results[f"{mode} {n}"], results[f"{mode} {count}"]
        print(f"| {label} | {short['peak_mb']:.0f} -> {long['peak_mb']:.0f} | "
              f"x{long['peak_mb'] / short['peak_mb']:.2f} | {long['fps']:.1f} |")

if __name__ == "__main__":
    main()
