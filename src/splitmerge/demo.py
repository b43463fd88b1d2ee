"""`splitmerge demo`: the most complete real run the project can do, on the bundled sample clips.

It grows with the project. Today (foundation): probe the samples, cut the talking head out of `carphone` with a
soft elliptical matte, move it along a path across the `bigbuckbunny` meadow, composite, and write the result as
a video, as an exact Layers folder (the composite, the placed subject, its matte, the background) and as a
labelled PNG grid. Splitting (a real subject matte from motion) replaces the hand-set ellipse once it lands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from .errors import OptionError
from .samples import list_samples, sample_path
from .video.io import read_video, write_video
from .video.layers import Layers, Video, composite
from .video.preview import grid, write_png
from .video.transforms import place

BACKGROUND_SIZE = (288, 512)


def head_matte(height: int, width: int, frames: int) -> np.ndarray:
    """A soft ellipse over the head and shoulders region of `carphone` (fixed, feathered edge): (T, H, W) float32."""
    mask = np.zeros((height, width), dtype=np.float32)
    center = (round(width * 0.48), round(height * 0.36))
    axes = (round(width * 0.21), round(height * 0.34))
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1.0, thickness=-1)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=3)
    return np.repeat(mask[None], frames, axis=0)


def run_demo(output: str | Path = "demo_out", frames: int = 60) -> dict:
    """Run the demo into `output`; returns the paths written."""
    if frames < 2:
        raise OptionError(f"frames {frames}: the demo needs at least 2 frames")
    started = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)

    samples = list_samples()
    (out / "samples.json").write_text(json.dumps(samples, indent=2) + "\n")
    print("bundled sample clips:")
    for row in samples:
        print(f"  {row['name']:<13} {row['width']}x{row['height']}, {row['frames']} frames at "
              f"{row['fps']:.2f} fps, {row['codec']}")

    subject = read_video(sample_path("carphone"), max_frames=frames)
    background = read_video(sample_path("bigbuckbunny"), size=BACKGROUND_SIZE, max_frames=frames)
    count = min(subject.num_frames, background.num_frames)
    matte = head_matte(subject.height, subject.width, count)
    layer = Layers.from_matte(subject.frames[:count], matte, np.zeros_like(subject.frames[:count]), subject.fps)

    # A path across the meadow, left to right, at half the subject's frame-relative size.
    path = np.stack([np.linspace(0.25, 0.72, count), np.full(count, 0.52)], axis=1)
    placed_fg, placed_alpha = place(layer.foreground, layer.alpha, BACKGROUND_SIZE, position=path, scale=0.55)
    composed = composite(placed_fg, placed_alpha, background.frames[:count])

    video_path = write_video(out / "composite.mp4", Video(composed, background.fps, dict(background.meta)))
    result = Layers(composed, placed_alpha, placed_fg, background.frames[:count], background.fps,
                    caption="a talking head moved across a cartoon meadow (hand-set matte, no harmonization)",
                    meta={"source": {"foreground": str(sample_path("carphone")),
                                     "background": str(sample_path("bigbuckbunny"))},
                          "backends": {"matte": "demo-ellipse", "placement": "trajectory"},
                          "fps_rational": background.meta.get("fps_rational")})
    layers_path = result.save(out / "layers")

    times = [0, count // 2, count - 1]
    rows = [[subject.frames[t], matte[t], placed_fg[t], background.frames[t], composed[t]] for t in times]
    preview_path = write_png(out / "preview.png", grid(rows, ["subject clip", "matte", "placed layer",
                                                              "background", "composite"], height=144))
    seconds = time.perf_counter() - started
    print(f"composited {count} frames of carphone's subject into bigbuckbunny in {seconds:.1f} s")
    written = {"composite": str(video_path), "layers": str(layers_path), "preview": str(preview_path),
               "samples": str(out / "samples.json")}
    for name, where in written.items():
        print(f"  {name:<10} {where}")
    return written
