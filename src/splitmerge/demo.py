"""`splitmerge demo`: the most complete real run the project can do, on the bundled sample clips.

It grows with the project. Today: probe the samples; split the first seconds of `bigbuckbunny` (the rabbit
climbing out of its burrow) into layers with the default, weight-free backends; then put the split subject,
with its own matte, into a street shot of `bikes` with `sm.compose` (the harmonized copy-paste baseline: the
learned Composer that places and harmonizes replaces it once it meets its bar). Writes the Layers folder (with
its side-by-side preview), the composite, and a labelled PNG grid to look at.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .errors import OptionError
from .samples import list_samples, sample_path
from .decompose.pipeline import split_to_folder
from .merge.compose import compose
from .video.io import read_video, write_video
from .video.layers import Layers, Video
from .video.preview import grid, write_png

SUBJECT = ("bigbuckbunny", 0)   # sample, first frame
SUBJECT_SIZE = (240, 426)
BACKGROUND = ("bikes", 137)     # a street seen through a fence (one shot: frames 137-186)
METHOD = "harmonized-copy-paste"


def run_demo(output: str | Path = "demo_out", frames: int = 49) -> dict:
    """Run the demo into `output`; returns the paths written."""
    if frames < 8:
        raise OptionError(f"frames {frames}: the demo needs at least 8 frames")
    started = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)

    samples = list_samples()
    (out / "samples.json").write_text(json.dumps(samples, indent=2) + "\n")
    print("bundled sample clips:")
    for row in samples:
        print(f"  {row['name']:<13} {row['width']}x{row['height']}, {row['frames']} frames at "
              f"{row['fps']:.2f} fps, {row['codec']}")

    name, start = SUBJECT
    print(f"splitting {frames} frames of {name} (motion segmenter, propagate restorer, measured caption)...")
    meta = split_to_folder(sample_path(name), out / "layers", start=start, frames=frames, size=SUBJECT_SIZE)
    layers = Layers.load(out / "layers")
    verdict = meta["filters"]
    print(f"  foreground ratio {verdict['fg_ratio']:.3f}, subject in {verdict['presence']:.0%} of frames, "
          f"split in {sum(meta['seconds'].values()):.1f} s; caption: {meta['caption']}")

    name, start = BACKGROUND
    background = read_video(sample_path(name), start=start, max_frames=layers.num_frames)
    result = compose(fg=layers, background=background, method=METHOD, position=(0.3, 0.62), scale=0.8)
    composed, count = result.frames, len(result.frames)
    print(f"composed with {METHOD} (the trained Composer replaces it once it meets its bar)")
    video_path = write_video(out / "composite.mp4", Video(composed, background.fps, dict(background.meta)))

    times = [0, count // 2, count - 1]
    rows = [[layers.frames[t], layers.alpha[t], layers.background[t], composed[t]] for t in times]
    preview_path = write_png(out / "preview.png", grid(rows, ["source", "split matte", "restored background",
                                                              "composed into bikes"], height=160))
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    written = {"layers": str(out / "layers"), "composite": str(video_path), "preview": str(preview_path),
               "samples": str(out / "samples.json")}
    for key, where in written.items():
        print(f"  {key:<10} {where}")
    return written
