"""The README's split pictures, from the bundled sample clips (about a minute on 2 cores).

    .venv/bin/python benchmarks/split_pictures.py [--out docs/images]

- ``split_effects_rabbit.jpg``: the demo's rabbit (bigbuckbunny, 49 frames at 480x854), three frames, each row:
  the source | the subject over green with the segmenter's objects as spatio-temporal connected components
  (``motion.objects=connected``, before objects were tracked) | the same with the default split (objects
  tracked through time) | the default split's effects layer (the cast shadow's gain: mid grey = untouched,
  darker = shadow).
- ``split_carphone_person.jpg``: a person from a real clip (carphone, 49 frames, ``segmenter="person"``: a
  talking head in a moving car hardly moves against its own size, so motion cannot find it), each row: source |
  matte | subject over green | clean background.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import splitmerge as sm
from splitmerge.decompose.pipeline import split
from splitmerge.video.preview import as_rgb, effects_picture, grid, write_jpeg

GREEN = np.array([0, 200, 0], np.float32)


def over_green(frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: `frame` (H, W, 3) uint8 over green through `alpha` (H, W) in [0, 1]."""
    weight = alpha[..., None].astype(np.float32)
    return np.clip(frame * weight + GREEN * (1 - weight), 0, 255).astype(np.uint8)


def rabbit(out: Path) -> None:
    path = sm.sample_path("bigbuckbunny")
    connected = split(path, frames=49, caption="rabbit", backend_options={"motion": {"objects": "connected"}})
    tracked = split(path, frames=49, caption="rabbit")
    rows = [[tracked.frames[t], over_green(connected.frames[t], connected.alpha[t]),
             over_green(tracked.frames[t], tracked.alpha[t]), effects_picture(tracked.effects[t])]
            for t in (0, 24, 48)]
    write_jpeg(out / "split_effects_rabbit.jpg",
               grid(rows, ["source", "objects connected (before)", "objects tracked (default)", "effects"],
                    height=200))


def person(out: Path) -> None:
    layers = split(sm.sample_path("carphone"), frames=49, caption="person", segmenter="person")
    rows = [[layers.frames[t], as_rgb(layers.alpha[t]), over_green(layers.frames[t], layers.alpha[t]),
             layers.background[t]] for t in (0, 24, 48)]
    write_jpeg(out / "split_carphone_person.jpg", grid(rows, ["source", "matte", "subject", "background"],
                                                       height=200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the pictures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rabbit(out)
    person(out)
    print(f"wrote {out / 'split_effects_rabbit.jpg'} and {out / 'split_carphone_person.jpg'}")


if __name__ == "__main__":
    main()
