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

from ..config_types import is_integer
from ..errors import OptionError, ShapeError
from ..paths import check_output
from ..video.io import iter_chunks, read_video, write_video
from ..video.layers import Layers, Video, composite, uncomposite, union_matte
from ..video.transforms import place
from .anchor import Anchoring, carried_anchor, check_anchor, placing, plan_anchoring
from .occlusion import (check_occlusion, occlude, occluded_frames, occluders_for, occlusion_record,
                        subjects_for_order)

_METHODS: dict[str, Callable[["ComposeInputs"], "Composite"]] = {}
_OPTIONS: dict[str, tuple[str, ...]] = {}


def register_method(name: str, options: tuple[str, ...] = ()):
    """Decorator: make `function(inputs: ComposeInputs) -> Composite` available as ``method=name``, taking the
    keyword `options` of its own (found in ``inputs.options``) besides `compose`'s."""

    def add(function):
        _METHODS[name] = function
        _OPTIONS[name] = tuple(options)
        return function

    return add


def method_options(method: str) -> tuple[str, ...]:
    """The options `method` takes besides `compose`'s own keywords."""
    check_method(method)
    return _OPTIONS[method]


def check_options(method: str, options: dict) -> None:
    """A one-line error for an option `method` does not take."""
    unknown = sorted(set(options) - set(method_options(method)))
    if unknown:
        takes = ", ".join(method_options(method)) or "none of its own"
        raise OptionError(f"method {method!r}: unknown option(s) {', '.join(unknown)} (it takes {takes})")


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
        carried: per subject, how the background's camera carries it (`Carried`, ``anchor="world"``) or None.
    """

    background: np.ndarray
    subjects: list[tuple[np.ndarray, np.ndarray]]
    fps: float
    prompt: str = ""
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    options: dict = field(default_factory=dict)
    carried: list = field(default_factory=list)


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
        effects: (T, H, W) float32, the gain the subjects' drawn effects (shadows) put on the background (1 =
            untouched), or None when the method draws none: frames = fg + (1 - alpha) * effects * background.
        occluders: (T, H, W) float32, what of the background passed in front of the subjects (`merge.occlusion`),
            or None when nothing did.
    """

    frames: np.ndarray
    fps: float
    alpha: np.ndarray | None
    background: np.ndarray
    meta: dict = field(default_factory=dict)
    effects: np.ndarray | None = None
    occluders: np.ndarray | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result video (H.264, atomic)."""
        return write_video(path, Video(self.frames, self.fps, {}))

    def layers(self) -> Layers:
        """The result as Layers (needs `alpha`): source = the result, the subjects' layer, the background."""
        if self.alpha is None:
            raise OptionError(f"method {self.meta.get('method')!r} gives no matte: split the result instead")
        foreground = uncomposite(self.frames, self.alpha, self.background, self.effects)
        return Layers(self.frames, self.alpha, foreground, self.background, self.fps, self.meta.get("prompt", ""),
                      {"compose": self.meta}, self.effects)


def over(inputs: ComposeInputs, subjects: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Composite:
    """Alpha-composite `subjects` (default: the inputs') over the background, in order: out = fg + (1 - a) * bg."""
    frames = inputs.background
    union = np.zeros(frames.shape[:3], np.float32)
    for foreground, alpha in subjects if subjects is not None else inputs.subjects:
        frames = composite(foreground, alpha, frames)
        union = union_matte(union, alpha)
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
    """Per-frame placement from a file: (T, 2) positions (x, y as fractions of the frame) or (T, 3) with a scale
    per frame. JSON: a list of [x, y] or [x, y, scale], or of {"x": .., "y": .., "scale": ..} (scale optional);
    otherwise CSV rows x,y or x,y,scale (# comments allowed)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            points = json.loads(path.read_text())
            if isinstance(points, list) and points and all(isinstance(p, dict) for p in points):
                keys = ("x", "y", "scale") if all("scale" in p for p in points) else ("x", "y")
                points = [[p[key] for key in keys] for p in points]
            points = np.asarray(points, dtype=np.float64)
        else:
            points = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise OptionError(f"{path}: not a trajectory ({' '.join(str(error).split())[:80]})") from None
    return check_trajectory(points, str(path))


def check_trajectory(points, name: str = "trajectory") -> np.ndarray:
    """`points` as a (T, 2) or (T, 3) float array of finite x, y [, scale > 0] rows, or a one-line error."""
    try:
        points = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.zeros((0, 0))
    if points.ndim != 2 or points.shape[1] not in (2, 3) or not len(points) or not np.all(np.isfinite(points)):
        raise OptionError(f"{name}: a trajectory is one x,y[,scale] row (fractions of the frame) per frame")
    if points.shape[1] == 3 and not np.all(points[:, 2] > 0):
        raise OptionError(f"{name}: every scale must be above 0")
    return points


PLACEMENTS = ("auto", "model", "given")


def compose(fg, background, prompt: str | None = None, method: str = "stm", model: str = "default", seed: int = 0,
            steps: int | None = None, guidance: float | None = None, position=None, scale=None, trajectory=None,
            placement: str = "auto", anchor: str = "auto", occlusion: str = "auto", occluder=None,
            **options) -> Composite:
    """Compose the foreground layer(s) `fg` (Layers, a Layers folder, or a list of them) into `background` (a
    Video or a video file) with `method` (see `methods()`).

    Placement (for every subject, before the method sees it): `position` (x, y) fractions of the frame where the
    subject's centre goes, `scale` (size relative to the frame height; 1.0 keeps it), or `trajectory` (one row
    per frame: x, y [, scale]; an array or a JSON/CSV file, see `load_trajectory`; its scales are multiplied by
    `scale`). None keeps each subject where it was in its own frame.

    `placement` says who has the last word on where each subject goes: ``model`` (a ``warp`` Composer moves,
    scales and mirrors the placed subject where the scene suits it: the paper's affordance-aware placement),
    ``given`` (it stays exactly as placed; the model only matches its colours to the scene) or ``auto``
    (``given`` when position, scale or trajectory is set, else ``model``). The baselines always keep it as placed;
    a ``layer`` or ``direct`` Composer draws the subject itself, wherever it sees fit.

    `anchor` says what the placement holds on to (`merge.anchor`): ``world`` (positions, scales and trajectories
    are in the background's first frame and the subject follows the scene as the camera moves, its own source
    camera removed), ``screen`` (frame coordinates) or ``auto`` (``world`` when the background's camera moves).
    `occlusion` (`merge.occlusion`): ``auto`` lets the background's own movers whose feet are nearer the camera
    than a subject's pass in front of it, ``off`` draws the subjects over everything; `occluder` (a matte video
    file, or a (T, H, W) float array in [0, 1]) is a user's matte of what is in front, wherever it is.
    `options`: the method's own (`method_options`; e.g. ``stm``: ``mirror``, ``preserve_background``); any other
    is a one-line error. Returns a `Composite`.
    """
    check_options(method, options)
    check_sampling(seed, steps, guidance)
    check_anchor(anchor)
    check_occlusion(occlusion)
    subjects = [_as_layers(item) for item in (fg if isinstance(fg, (list, tuple)) else [fg])]
    if not subjects:
        raise OptionError("fg: no foreground layer given")
    video = _as_video(background)
    count = min([video.num_frames] + [layers.num_frames for layers in subjects])
    size = video.frames.shape[1:3]
    plan = plan_placement(count, position, scale, trajectory, placement)
    for index, layers in enumerate(subjects):
        if not (layers.alpha[:count] > 0).any():
            raise empty_matte(index)
    anchoring = plan_anchoring(anchor, lambda: iter_chunks(iter(video.frames[:count]), CAMERA_CHUNK), size, count)
    placing_keywords = [placing(anchoring, layers.meta.get("camera"), layers.num_frames, layers.alpha.shape[1:],
                                count, [(0, layers.alpha[:count])], f"fg {index + 1} camera")
                        for index, layers in enumerate(subjects)]
    placed = [place(layers.foreground[:count], layers.alpha[:count], size, position=plan.position, scale=plan.scale,
                    **keywords) for layers, keywords in zip(subjects, placing_keywords, strict=True)]
    for index, (_, alpha) in enumerate(placed):
        if not (alpha > 0).any():
            raise placed_outside(index, size, plan)
    text = prompt if prompt is not None else " ".join(layers.caption for layers in subjects if layers.caption)
    inputs = ComposeInputs(video.frames[:count], placed, video.fps, text, seed, steps, guidance,
                           {"model": model, "placement": plan.by, **options},
                           [carried_anchor(keywords, plan.position, layers.alpha.shape[1:], size, count)
                            for layers, keywords in zip(subjects, placing_keywords, strict=True)])
    result = _METHODS[method](inputs)
    fronts = occluders_for(video, count, occlusion, occluder,
                           subjects_for_order(result.alpha, [alpha for _, alpha in placed]), CAMERA_CHUNK)
    if fronts is not None:
        result.frames, result.alpha, result.effects = occlude(result.frames, result.alpha, result.background,
                                                              result.effects, fronts)
        result.occluders = fronts
    result.meta = {**compose_meta(method, text, seed, count, plan, anchoring),
                   "occlusion": occlusion_record(occlusion, occluder, occluded_frames(fronts), count), **result.meta}
    return result


CAMERA_CHUNK = 16  # frames read at a time to measure the background's camera


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")


def check_compose_outputs(fg, background, output, layers_out=None, occluder=None) -> None:
    """Refuse an `output` video or `layers_out` folder that would overwrite or sit inside an input (the
    `background` file, the `fg` Layers folders, an `occluder` matte file) or each other, or that cannot be written
    (`paths.check_output`)."""
    given = [*(fg if isinstance(fg, (list, tuple)) else [fg]), background, occluder]
    sources = [item for item in given if isinstance(item, (str, os.PathLike))]
    check_output(output, sources, kind="file", suffixes=VIDEO_SUFFIXES)
    if layers_out is not None:
        check_output(layers_out, [*sources, output], kind="folder", flag="--layers-out")


def check_sampling(seed, steps, guidance) -> None:
    """One-line errors for a seed that is not an integer, steps below 1, or a guidance that is not a finite
    number >= 0 (None = the method's default)."""
    if not is_integer(seed):
        raise OptionError(f"seed {seed!r}: expected an integer")
    if steps is not None and (not is_integer(steps) or steps < 1):
        raise OptionError(f"steps {steps!r}: expected an integer >= 1")
    if guidance is not None:
        try:
            finite = np.isfinite(float(guidance)) and float(guidance) >= 0
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise OptionError(f"guidance {guidance!r}: expected a finite number >= 0")


def check_method(method: str) -> None:
    known = methods()
    if method not in known:
        raise OptionError(f"method {method!r}: expected one of {', '.join(known)}")


@dataclass
class Placement:
    """Where every subject goes (`place`): position None, (x, y) or (T, 2) fractions; scale a factor or (T,);
    by: "model" or "given" (see `compose`)."""

    position: np.ndarray | None
    scale: float | np.ndarray
    by: str


def plan_placement(count: int, position=None, scale=None, trajectory=None, placement: str = "auto") -> Placement:
    """The placement of `count` frames from `compose`'s options, checked (one-line errors)."""
    if placement not in PLACEMENTS:
        raise OptionError(f"placement {placement!r}: expected one of {', '.join(PLACEMENTS)}")
    if placement == "auto":
        placement = "model" if position is None and scale is None and trajectory is None else "given"
    if trajectory is not None and position is not None:
        raise OptionError("give position or trajectory, not both")
    if position is not None:
        position = _checked_position(position)
    if scale is not None and not _positive_finite(scale):
        raise OptionError(f"scale {scale}: must be a finite number above 0")
    scale = 1.0 if scale is None else scale
    if trajectory is not None:
        track = load_trajectory(trajectory) if isinstance(trajectory, (str, os.PathLike)) else \
            check_trajectory(trajectory)
        if len(track) < count:
            raise ShapeError(f"trajectory: {len(track)} rows for {count} frames (one x,y[,scale] row per frame)")
        position = track[:count, :2]
        if track.shape[1] == 3:  # per-frame scales, times the overall `scale`
            scale = track[:count, 2] * scale
    return Placement(None if position is None else np.asarray(position, dtype=np.float64), scale, placement)


def _positive_finite(values) -> bool:
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return values.size > 0 and bool(np.all(np.isfinite(values)) and np.all(values > 0))


def _checked_position(position) -> np.ndarray:
    """`position` as finite (x, y) fractions, or (T, 2) of them."""
    try:
        points = np.asarray(position, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.zeros(0)
    if points.shape[-1:] != (2,) or points.ndim > 2 or not np.all(np.isfinite(points)):
        raise OptionError(f"position {position!r}: expected finite x, y fractions of the frame, e.g. (0.5, 0.7)")
    return points


def empty_matte(index: int) -> OptionError:
    return OptionError(f"fg {index + 1}: the subject's matte is empty (nothing to compose)")


def placed_outside(index: int, size: tuple[int, int], plan: Placement) -> OptionError:
    where = None if plan.position is None else plan.position.tolist()
    return OptionError(f"fg {index + 1}: placed entirely outside the {size[1]}x{size[0]} frame (position {where})")


def compose_meta(method: str, prompt: str, seed: int, count: int, plan: Placement, anchoring: Anchoring) -> dict:
    """What every result records of how it was asked for."""
    return {"method": method, "prompt": prompt, "seed": seed, "frames": count,
            "placement": {"position": None if plan.position is None else plan.position.tolist(),
                          "scale": np.asarray(plan.scale).tolist(), "by": plan.by},
            "anchor": anchoring.record()}
