"""Video I/O benchmark: decode and encode frames/s at 480x720, and peak memory streamed vs whole.

    .venv/bin/python benchmarks/video_io.py [--frames 600] [--out bench_out]

Builds a real-footage test clip (the bikes sample, cover-resized to 480x720, played forwards and backwards to
the requested length), then measures, in this one run:
- encode: splitmerge.VideoWriter (H.264 crf 18, veryfast) frames/s, bytes and PSNR; baseline OpenCV's
  cv2.VideoWriter (MPEG-4 part 2, its only built-in MP4 encoder) on the same frames;
- decode: splitmerge.iter_frames frames/s at full size and resized to 240x360; baseline cv2.VideoCapture
  (best of 3 runs each);
- memory: peak RSS of a fresh process each (interpreter and imports included) reading N and 2N frames
  streamed (iter_frames) vs whole (read_video). Streamed must stay flat as the length doubles.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

import splitmerge as sm
from splitmerge.eval import psnr

SIZE = (480, 720)


def source_frames(count: int):
    """Yield `count` real frames at SIZE: bikes forwards then backwards, repeated."""
    clip = sm.read_video(sm.sample_path("bikes"), size=SIZE).frames
    order = np.concatenate([np.arange(len(clip)), np.arange(len(clip) - 2, 0, -1)])
    for index in range(count):
        yield clip[order[index % len(order)]]


def bench_encode(path: Path, count: int) -> dict:
    started = time.perf_counter()
    with sm.VideoWriter(path, 25) as writer:
        for frame in source_frames(count):
            writer.write(frame)
    ours = count / (time.perf_counter() - started)

    baseline_path = path.with_name("baseline_mp4v.mp4")
    writer = cv2.VideoWriter(str(baseline_path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (SIZE[1], SIZE[0]))
    started = time.perf_counter()
    for frame in source_frames(count):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    baseline = count / (time.perf_counter() - started)

    reference = np.stack(list(source_frames(min(count, 100))))
    ours_back = sm.read_video(path, max_frames=len(reference)).frames
    capture = cv2.VideoCapture(str(baseline_path))
    baseline_back = np.stack([cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(len(reference))])
    return {"splitmerge_h264_fps": ours, "opencv_mp4v_fps": baseline, "ratio": ours / baseline,
            "splitmerge_h264_psnr_db": psnr(reference, ours_back),
            "opencv_mp4v_psnr_db": psnr(reference, baseline_back),
            "splitmerge_h264_mb": path.stat().st_size / 1e6, "opencv_mp4v_mb": baseline_path.stat().st_size / 1e6}


def best_rate(frames_of, repeats: int = 3) -> tuple[float, int]:
    """Best frames/s over `repeats` runs of iterating `frames_of()` (the machine is shared: take the best)."""
    best, count = 0.0, 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = sum(1 for _ in frames_of())
        best = max(best, count / (time.perf_counter() - started))
    return best, count


def opencv_frames(path: Path):
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # the same output as ours: RGB arrays


def bench_decode(path: Path, count: int) -> dict:
    ours, frames = best_rate(lambda: sm.iter_frames(path))
    ours_resized, _ = best_rate(lambda: sm.iter_frames(path, size=(240, 360)))
    baseline, read = best_rate(lambda: opencv_frames(path))
    assert frames == read == count, (frames, read, count)
    return {"splitmerge_fps": ours, "splitmerge_resized_240x360_fps": ours_resized, "opencv_fps": baseline,
            "ratio": ours / baseline}


def child_peak_rss(mode: str, path: Path, frames: int) -> float:
    """Peak RSS (MB) of a fresh process that imports splitmerge and reads `frames` frames."""
    code = f"""
import numpy as np, splitmerge as sm
if {mode!r} == "streamed":
    total = np.zeros(3)
    for frame in sm.iter_frames({str(path)!r}, max_frames={frames}):
        total += frame.mean(axis=(0, 1))
else:
    video = sm.read_video({str(path)!r}, max_frames={frames})
    total = video.frames.mean()
# VmHWM: this process image's own peak (ru_maxrss would carry the parent's peak across fork + exec).
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    long_clip = out / f"clip_{2 * args.frames}.mp4"

    results = {"machine": f"{os.cpu_count()} cores", "size": f"{SIZE[0]}x{SIZE[1]}", "frames": args.frames}
    results["encode"] = bench_encode(long_clip, 2 * args.frames)
    results["decode"] = bench_decode(long_clip, 2 * args.frames)
    memory = {"imports_only": child_peak_rss("streamed", long_clip, 1)}
    for mode in ("streamed", "whole"):
        for frames in (args.frames, 2 * args.frames):
            memory[f"{mode}_{frames}"] = child_peak_rss(mode, long_clip, frames)
    memory["streamed_growth"] = memory[f"streamed_{2 * args.frames}"] / memory[f"streamed_{args.frames}"]
    memory["whole_growth"] = memory[f"whole_{2 * args.frames}"] / memory[f"whole_{args.frames}"]
    memory["frame_mb"] = SIZE[0] * SIZE[1] * 3 / 1e6
    results["peak_rss_mb"] = memory

    print(json.dumps(results, indent=2, default=lambda v: round(v, 2)))
    e, d, m = results["encode"], results["decode"], memory
    n = args.frames
    print(f"\n| measure ({SIZE[0]}x{SIZE[1]}) | splitmerge | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| encode frames/s (H.264 crf 18 vs OpenCV mp4v) | {e['splitmerge_h264_fps']:.0f} "
          f"({e['splitmerge_h264_psnr_db']:.1f} dB, {e['splitmerge_h264_mb']:.1f} MB) | {e['opencv_mp4v_fps']:.0f} "
          f"({e['opencv_mp4v_psnr_db']:.1f} dB, {e['opencv_mp4v_mb']:.1f} MB) | {e['ratio']:.2f} |")
    print(f"| decode frames/s (vs cv2.VideoCapture) | {d['splitmerge_fps']:.0f} | {d['opencv_fps']:.0f} | "
          f"{d['ratio']:.2f} |")
    print(f"| decode + resize to 240x360, frames/s | {d['splitmerge_resized_240x360_fps']:.0f} | | |")
    print(f"| peak RSS streamed, {n} -> {2 * n} frames (MB) | {m[f'streamed_{n}']:.0f} -> "
          f"{m[f'streamed_{2 * n}']:.0f} | | x{m['streamed_growth']:.2f} |")
    print(f"| peak RSS whole clip, {n} -> {2 * n} frames (MB) | {m[f'whole_{n}']:.0f} -> "
          f"{m[f'whole_{2 * n}']:.0f} | | x{m['whole_growth']:.2f} |")


if __name__ == "__main__":
    main()
