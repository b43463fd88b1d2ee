"""`sm.compose`: put one or more foreground layers into a background video, by a named method.

Every method receives the same prepared inputs (`ComposeInputs`): the background frames, and each subject
placed on the background's canvas (position, scale or a trajectory; by default where it was in its own frame,
at the same size relative to the frame height), and returns a `Composite`. Methods register by name
(`register_method`); this module holds the interface, `merge.baselines` the two baselines, and the Composer (the
``stm`` method) joins them when it lands.

Length: the shortest of the background and the subjects (frames are never invented). Size: the background's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import OptionError, ShapeError
from ..video.io import read_video, write_video
from ..video.layers import Layers, Video, composite
from ..video.transforms import place

_METHODS: dict[str, Callable[["ComposeInputs"], "Composite"]] = {}


def register_method(name: str):
    """Decorator: make `function(inputs: ComposeInputs) -> Composite` available as ``method=name``."""

    def add(function):
        _METHODS[name] = function
        return function

    return add


def methods() -> list[str]:
    """The registered method names."""
    from . import baselines, i2v, stm  # noqa: F401 (they register their methods)

    return sorted(_METHODS)


@dataclass
class ComposeInputs:
    """What a method works from.

    Attributes:
        background: (T, H, W, 3) uint8, the background video's frames.
        subjects: one (foreground (T, H, W, 3) uint8 premultiplied, alpha (T, H, W) float32) pair per subject,
            already placed on the background's canvas, in drawing order (the last is in front).
        fps: frames per second (the background's).
        prompt: text, or "" (the subjects' captions joined when none is given).
        seed, steps, guidance: for generative methods.
    """

    background: np.ndarray
    subjects: list[tuple[np.ndarray, np.ndarray]]
    fps: float
    prompt: str = ""
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    options: dict = field(default_factory=dict)


@dataclass
class Composite:
    """A composed video and what is known about it.

    Attributes:
        frames: (T, H, W, 3) uint8, the result.
        fps: frames per second.
        alpha: (T, H, W) float32, where the subjects are in the result (the union of their mattes), or None when
            the method cannot say (then evaluation re-splits the result).
        background: (T, H, W, 3) uint8, the background it was composed over.
        meta: method, prompt, placement and the method's own settings (JSON-able).
    """

    frames: np.ndarray
    fps: float
    alpha: np.ndarray | None
    background: np.ndarray
    meta: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result video (H.264, atomic)."""
        return write_video(path, Video(self.frames, self.fps, {}))

    def layers(self) -> Layers:
        """The result as Layers (needs `alpha`): source = the result, the subjects' layer, the background."""
        if self.alpha is None:
            raise OptionError(f"method {self.meta.get('method')!r} gives no matte: split the result instead")
        foreground = np.clip(np.rint(self.frames - (1 - self.alpha[..., None]) * self.background), 0, 255)
        return Layers(self.frames, self.alpha, foreground.astype(np.uint8), self.background, self.fps,
                      self.meta.get("prompt", ""), {"compose": self.meta})


def over(inputs: ComposeInputs, subjects: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Composite:
    """Alpha-composite `subjects` (default: the inputs') over the background, in order: out = fg + (1 - a) * bg."""
    frames = inputs.background
    union = np.zeros(frames.shape[:3], np.float32)
    for foreground, alpha in subjects if subjects is not None else inputs.subjects:
        frames = composite(foreground, alpha, frames)
        union = union + alpha * (1 - union)
    return Composite(frames, inputs.fps, union, inputs.background)


def _as_layers(item) -> Layers:
    if isinstance(item, Layers):
        return item
    if isinstance(item, (str, os.PathLike)):
        return Layers.load(item)
    raise OptionError(f"fg: expected Layers or a Layers folder, got {type(item).__name__}")


def _as_video(item) -> Video:
    if isinstance(item, Video):
        return item
    if isinstance(item, (str, os.PathLike)):
        return read_video(item)
    raise OptionError(f"background: expected a Video or a video file, got {type(item).__name__}")


def load_trajectory(path: str | os.PathLike) -> np.ndarray:
    """(T, 2) positions (x, y as fractions of the frame) from a JSON list of [x, y] or a CSV of x,y rows."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            points = np.asarray(json.loads(path.read_text()), dtype=np.float64)
        else:
            points = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise OptionError(f"{path}: not a trajectory ({' '.join(str(error).split())[:80]})") from None
    if points.ndim != 2 or points.shape[1] != 2 or not np.all(np.isfinite(points)):
        raise OptionError(f"{path}: a trajectory is one x,y pair (fractions of the frame) per frame")
    return points


def compose(fg, background, prompt: str | None = None, method: str = "stm", model: str = "default", seed: int = 0,
            steps: int | None = None, guidance: float | None = None, position=None, scale=None, trajectory=None,
            **options) -> Composite:
    """Compose the foreground layer(s) `fg` (Layers, a Layers folder, or a list of them) into `background` (a
    Video or a video file) with `method` (see `methods()`).

    Placement (for every subject): `position` (x, y) fractions of the frame, `scale` (size relative to the
    frame height; 1.0 keeps it), or `trajectory` ((T, 2) positions, or a JSON/CSV file of them). None keeps each
    subject where it was in its own frame. Returns a `Composite`.
    """
    known = methods()
    if method not in known:
        raise OptionError(f"method {method!r}: expected one of {', '.join(known)}")
    subjects = [_as_layers(item) for item in (fg if isinstance(fg, (list, tuple)) else [fg])]
    if not subjects:
        raise OptionError("fg: no foreground layer given")
    video = _as_video(background)
    count = min([video.num_frames] + [layers.num_frames for layers in subjects])
    size = video.frames.shape[1:3]
    if trajectory is not None and position is not None:
        raise OptionError("give position or trajectory, not both")
    if trajectory is not None:
        position = load_trajectory(trajectory) if isinstance(trajectory, (str, os.PathLike)) else \
            np.asarray(trajectory, dtype=np.float64)
        if position.shape != (count, 2) and not (position.ndim == 2 and len(position) >= count):
            raise ShapeError(f"trajectory: expected at least {count} (x, y) positions, got {position.shape}")
        position = position[:count]
    for index, layers in enumerate(subjects):
        if not (layers.alpha[:count] > 0).any():
            raise OptionError(f"fg {index + 1}: the subject's matte is empty (nothing to compose)")
    placed = [place(layers.foreground[:count], layers.alpha[:count], size, position=position,
                    scale=1.0 if scale is None else scale) for layers in subjects]
    for index, (_, alpha) in enumerate(placed):
        if not (alpha > 0).any():
            raise OptionError(f"fg {index + 1}: placed entirely outside the {size[1]}x{size[0]} frame "
                              f"(position {position if position is None else np.asarray(position).tolist()})")
    text = prompt if prompt is not None else " ".join(layers.caption for layers in subjects if layers.caption)
    inputs = ComposeInputs(video.frames[:count], placed, video.fps, text, seed, steps, guidance,
                           {"model": model, **options})
    result = _METHODS[method](inputs)
    result.meta = {"method": method, "prompt": text, "seed": seed, "frames": count,
                   "placement": {"position": None if position is None else np.asarray(position).tolist(),
                                 "scale": scale}, **result.meta}
    return result
