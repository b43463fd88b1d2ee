"""`splitmerge demo`: the most complete real run the project can do, on the bundled sample clips.

Probe the samples; split the first seconds of `bigbuckbunny` (the rabbit climbing out of its burrow) into
layers with the default, weight-free backends; start the split subject at a place in a street shot of `bikes`;
compose it there with the bundled default Composer (`stm`, which moves, mirrors, scales and re-tints the subject
where it judges it belongs) and with both copy-paste baselines (which leave it where it starts); score all three
with `evaluate` (the paper's metrics; there is no truth for a cross pair) and write its `report.html`, each
result video, a side-by-side video of the three and a labelled PNG grid to look at.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .config_types import is_integer
from .decompose.caption import plain_caption
from .decompose.pipeline import split_to_folder
from .errors import OptionError
from .eval.bench import pair_bench
from .eval.evaluate import evaluate
from .merge.stm import stm_model
from .paths import check_output
from .samples import list_samples, sample_path
from .video.io import read_video, write_video
from .video.layers import Layers, Video, composite
from .video.preview import grid, side_by_side, write_png
from .video.transforms import place

SUBJECT = ("bigbuckbunny", 0)   # sample, first frame
SUBJECT_SIZE = (240, 426)
BACKGROUND = ("bikes", 137)     # a street seen through a fence (one shot: frames 137-186)
START = {"position": (0.3, 0.62), "scale": 0.8}  # where the subject starts on the street (the baselines keep it)
METHODS = ("stm", "harmonized-copy-paste", "copy-paste")
CASE = "rabbit-on-bikes"


def run_demo(output: str | Path = "demo_out", frames: int = 49, model: str = "default") -> dict:
    """Run the demo into `output`; returns the paths written. `model`: the Composer for ``stm``."""
    if not is_integer(frames) or frames < 8:
        raise OptionError(f"frames {frames!r}: the demo needs at least 8 frames")
    out = check_output(output, [None if model == "default" else model], kind="folder")
    stm_model({"model": model})  # a bad --model fails here, before anything is written
    fresh = not out.exists() or not any(out.iterdir())
    try:
        return _run(out, frames, model)
    except BaseException:
        if fresh:  # a failed first run leaves no half-written folder
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(out: Path, frames: int, model: str) -> dict:
    """`run_demo`'s steps, writing into `out`."""
    started = time.perf_counter()
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
    count = min(len(background.frames), layers.num_frames)
    street = Video(background.frames[:count], background.fps, dict(background.meta))
    foreground, alpha = place(layers.foreground[:count], layers.alpha[:count], street.frames.shape[1:3], **START)
    pasted = composite(foreground, alpha, street.frames)
    # what a user would write for the pair as given (the benchmarks' plain prompt): the subject where it starts
    # and the street's light, not the light of the burrow it was cut from
    prompt = plain_caption(pasted, alpha, street.fps)
    subject = Layers(pasted, alpha, foreground, street.frames, street.fps, prompt)
    bench = pair_bench(out / "bench", subject, street, prompt, key=CASE)
    print(f"  prompt: {prompt}")
    print(f"composing into {name} with {', '.join(METHODS)} and scoring them...")
    metrics = evaluate(bench, list(METHODS), out / "evaluation", model=model)
    videos = {method: read_video(out / "evaluation" / "videos" / method / f"{CASE}.mp4").frames
              for method in METHODS}
    stm_path = write_video(out / "composite.mp4", Video(videos["stm"], street.fps, dict(street.meta)))

    labels = ["Composer (stm)", "harmonized copy-paste", "copy-paste"]
    side = np.stack([side_by_side([videos[m][t] for m in METHODS], labels) for t in range(count)])
    side_path = write_video(out / "side_by_side.mp4", Video(side, street.fps))
    times = [0, count // 2, count - 1]
    rows = [[layers.frames[t], layers.alpha[t], subject.frames[t]] + [videos[m][t] for m in METHODS]
            for t in times]
    preview_path = write_png(out / "preview.png", grid(rows, ["source", "split matte", "start (pasted)"] + labels,
                                                       height=150))
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    summary = metrics["summary"]
    for method in METHODS:
        row = summary[method]
        print(f"  {method:<22} " + ", ".join(f"{key} {row[key]['mean']:.2f}" for key in
                                               ("fg_identity@appearance", "bg_identity@appearance",
                                                "fg_motion@flow", "bg_motion@dis") if key in row))
    written = {"layers": str(out / "layers"), "composite": str(stm_path), "side_by_side": str(side_path),
               "preview": str(preview_path), "report": str(out / "evaluation" / "report.html"),
               "samples": str(out / "samples.json")}
    for key, where in written.items():
        print(f"  {key:<12} {where}")
    return written
