"""Compose memory benchmark: peak memory of composing N and 2N frames, streamed (what `splitmerge compose` runs)
vs in memory (`sm.compose` then `save`).

    .venv/bin/python benchmarks/compose_memory.py [--frames 150] [--method stm] [--out bench_out/compose_memory]

Writes a 2N-frame synthetic subject (a Layers folder at 240x360) and a background at 480x720 of N and of 2N
frames, then runs each mode in a fresh process (interpreter and imports included) with the bundled Composer at 4
sampling steps, and prints peak RSS and frames/s. Streamed memory must stay flat as the length doubles (a few
chunks of frames, and one window of the Composer's 64x96 frames); in memory grows with the clip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import splitmerge as sm
from splitmerge.data.synthetic import render_scene

PROBE = """
import json, sys, time
import splitmerge as sm
from splitmerge.merge.stream import compose_to_file
subject, background, out, mode, method = sys.argv[1:6]
started = time.perf_counter()
if mode == "streamed":
    frames = compose_to_file(subject, background, out, method=method, steps=4)["frames"]
else:
    result = sm.compose(fg=subject, background=background, method=method, steps=4)
    result.save(out)
    frames = len(result.frames)
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"peak_mb": peak, "fps": frames / seconds, "frames": frames}))
"""


def measure(subject: Path, background: Path, out: Path, mode: str, method: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, str(subject), str(background), str(out), mode, method],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="N (the long run composes 2N)")
    parser.add_argument("--method", default="stm", choices=["stm", "copy-paste"])
    parser.add_argument("--out", default="bench_out/compose_memory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    count = 2 * args.frames
    layers, _ = render_scene(3, frames=count, size=(240, 360))
    layers.save(out / "subject", preview=False)
    street, _ = render_scene(8, frames=count, size=(480, 720))
    backgrounds = {frames: sm.write_video(out / f"street_{frames}.mp4", sm.Video(street.background[:frames], 25.0))
                   for frames in (args.frames, count)}
    del layers, street

    results = {}
    for mode in ("streamed", "in memory"):
        for frames in (args.frames, count):
            key = f"{mode} {frames}"
            results[key] = measure(out / "subject", backgrounds[frames], out / f"{mode.replace(' ', '_')}.mp4",
                                   mode, args.method)
            print(f"{mode:<10} {frames:>5} frames ({args.method}): peak RSS {results[key]['peak_mb']:.0f} MB, "
                  f"{results[key]['fps']:.1f} frames/s")
    for mode in ("streamed", "in memory"):
        grow = results[f"{mode} {count}"]["peak_mb"] / results[f"{mode} {args.frames}"]["peak_mb"]
        print(f"{mode}: peak RSS x{grow:.2f} from {args.frames} to {count} frames")


if __name__ == "__main__":
    main()
