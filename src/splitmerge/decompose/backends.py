"""The backend registry of the Split stage: a name maps to a class; each class says whether it can run here.

Four kinds of backend, each a small interface:

- ``segmenter``: finds the moving subject. Constructed with ``all_objects`` (keep every moving object, not
  only the dominant one); ``segment(clip, prior=None, pick=None) -> Segmentation``, where `prior` (T, H, W)
  float32, when given, is a matte the result should agree with where it is non-zero (the previous window's
  subject on overlapping frames), so a long video keeps one subject. `pick`, a `SubjectPick`, is the user's
  choice of subject (a point or box on the first frame): without a prior the segmenter keeps the mover it hits;
  with one it keeps only what agrees with the prior (the pick was resolved in an earlier window), and nothing
  when nothing does. Segmenters that can honour a pick set ``can_pick = True``; the pipeline refuses a pick
  for the others.
- ``refiner``: improves a segmentation's masks (e.g. SAM2 prompted by the segmenter's boxes and points).
  ``refine(clip, segmentation) -> Segmentation``.
- ``restorer``: removes the subject and fills its hole. ``restore(clip, alpha) -> (T, H, W, 3) uint8``.
- ``captioner``: describes the clip. ``describe(clip, alpha) -> str``.

Every backend class has a ``name``, a one-line ``description``, and ``availability(**options)`` returning
``(True, "")`` or ``(False, "why not, and how to fix it")``, e.g. a missing pip extra or a missing local weights
path (it receives those of the constructor's options it names, such as ``model_path``). Classes register
themselves with ``@register(kind)``; modules holding optional backends are imported lazily by
`load_builtin_backends`, so a missing optional dependency never breaks the import.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import OptionError, SplitMergeError

KINDS = ("segmenter", "refiner", "restorer", "matting", "captioner")

# Modules that define built-in backends; each registers its classes on import.
BUILTIN_MODULES = (
    "splitmerge.decompose.motion",
    "splitmerge.decompose.restore",
    "splitmerge.decompose.matting",
    "splitmerge.decompose.baseline",
    "splitmerge.decompose.person",
    "splitmerge.decompose.caption",
    "splitmerge.decompose.vlm_caption",
    "splitmerge.decompose.sam2",
    "splitmerge.decompose.inpaint",
)

_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


class BackendUnavailable(SplitMergeError):
    """A backend was asked for that cannot run here (missing extra, missing weights, bad path)."""


class Backend:
    """Base class of all Split backends."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    can_pick: ClassVar[bool] = False  # segmenters: honours ``segment(..., pick=SubjectPick)``
    needs_scene: ClassVar[bool] = False  # matting: wants the restored scene plate in every frame's view
    scene_optional: ClassVar[bool] = False  # matting: ... but works without it (a restorer that has none)
    effects_only: ClassVar[bool] = False  # matting: without an effects layer it leaves the matte as it is

    @classmethod
    def availability(cls, **options) -> tuple[bool, str]:
        """(True, "") when this backend can run here, else (False, reason with the fix). `options` are the
        constructor's options when known (e.g. a ``model_path`` flag); `splitmerge split --help` asks with
        none, so the environment decides there."""
        return True, ""

    def describe_config(self) -> dict:
        """JSON-able settings recorded in layers.json under ``backends``."""
        return {"name": self.name}


def register(kind: str):
    """Class decorator: add a backend class to the registry under its ``name``."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r}")

    def add(cls: type) -> type:
        if not cls.name:
            raise ValueError(f"{cls.__name__} has no name")
        cls.kind = kind
        _REGISTRY[kind][cls.name] = cls
        return cls

    return add


def load_builtin_backends() -> None:
    """Import every built-in backend module that exists (each registers its classes)."""
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # the module exists but one of its own imports is missing
                raise


def backends(kind: str) -> dict[str, type]:
    """Registered classes of one kind, by name."""
    load_builtin_backends()
    return dict(_REGISTRY[kind])


def get_backend(kind: str, name: str, **options: Any) -> Backend:
    """Instantiate the backend `name` of `kind`; a clear error when unknown or unavailable here."""
    registered = backends(kind)
    if name not in registered:
        raise OptionError(f"{kind} {name!r}: unknown; expected one of {', '.join(sorted(registered))}")
    cls = registered[name]
    unknown = sorted(set(options) - set(_accepted(cls.__init__, options)))
    if unknown:
        raise OptionError(f"{kind} {name!r}: unknown option(s) {', '.join(unknown)}")
    _check_option_types(f"{kind} {name!r}", cls.__init__, options)
    ok, reason = cls.availability(**_accepted(cls.availability, options))
    if not ok:
        raise BackendUnavailable(f"{kind} {name!r} is not available here: {reason}")
    return cls(**options)


def _check_option_types(what: str, function, options: dict) -> None:
    """A one-line error for an option whose value is not of its default's type (an int, a finite number, a
    bool, text); options without a typed default are the backend's to check."""
    parameters = inspect.signature(function).parameters
    for key, value in options.items():
        default = parameters[key].default if key in parameters else None
        if isinstance(default, bool):
            fits = isinstance(value, bool)
        elif isinstance(default, int):
            fits = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif isinstance(default, str):
            fits = isinstance(value, str)
        else:
            continue
        if not fits:
            raise OptionError(f"{what}: option {key}={value!r} must be {_type_name(default)}, like its default "
                              f"{default!r}")


def _type_name(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    return {int: "an integer", float: "a finite number", str: "text"}[type(default)]


def _accepted(function, options: dict) -> dict:
    """The subset of `options` that `function` takes (all of them when it takes ``**kwargs``)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(options)
    return {key: value for key, value in options.items() if key in parameters}


def describe_backends() -> list[dict]:
    """Every registered backend with its kind, availability and the reason when unavailable."""
    rows = []
    for kind in KINDS:
        for name, cls in sorted(backends(kind).items()):
            ok, reason = cls.availability()
            rows.append({"kind": kind, "name": name, "available": ok, "reason": reason,
                         "description": cls.description})
    return rows


# ------------------------------------------------------------------------------------------- shared data types


@dataclass
class Segmentation:
    """A segmenter's result for one clip.

    Attributes:
        alpha: (T, H, W) float32 in [0, 1], the kept subject(s).
        boxes: (T, 4) float32 per-frame box of the kept subject as (x0, y0, x1, y1) pixels; NaN rows where the
            subject is absent. Prompts for refiners.
        points: per frame, an (N, 2) float32 array of (x, y) pixels inside the subject (positive prompts).
        found: False when no moving subject was found (alpha is then all zero).
        reason: why nothing was found, or "".
        info: JSON-able diagnostics (object count, scores, timings of sub-steps).
    """

    alpha: np.ndarray
    boxes: np.ndarray
    points: list[np.ndarray]
    found: bool = True
    reason: str = ""
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SubjectPick:
    """The user's choice of subject on the clip's first frame, in fractions of the frame's width and height:
    a `point` (x, y) on the subject or a `box` (x0, y0, x1, y1) around it (exactly one of the two).
    Raises `OptionError` (one line) for anything else."""

    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self):
        if (self.point is None) == (self.box is None):
            raise OptionError("pick a subject by a point or by a box, not both" if self.point is not None
                              else "a subject pick needs a point or a box")
        name, value, length = ("point", self.point, 2) if self.point is not None else ("box", self.box, 4)
        numbers = _fractions(name, value, length)
        if name == "box" and not (numbers[0] < numbers[2] and numbers[1] < numbers[3]):
            raise OptionError(f"box {_show(numbers)}: needs x0 < x1 and y0 < y1")
        object.__setattr__(self, name, numbers)

    def describe(self) -> str:
        """E.g. ``point (0.20, 0.50)`` or ``box (0.10, 0.20, 0.40, 0.80)``: for messages."""
        return f"point {_show(self.point)}" if self.point is not None else f"box {_show(self.box)}"

    def pixel_point(self, height: int, width: int) -> tuple[float, float] | None:
        """The point in pixels (x, y) of an (H, W) frame, or None for a box."""
        if self.point is None:
            return None
        return min(self.point[0] * width, width - 1.0), min(self.point[1] * height, height - 1.0)

    def region(self, height: int, width: int, radius: float = 0.0) -> np.ndarray:
        """(H, W) bool: the box's pixels, or the pixels within `radius` px of the point (at least its own)."""
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        if self.point is not None:
            x, y = self.pixel_point(height, width)
            distance = np.hypot(xs + 0.5 - x, ys + 0.5 - y)
            return distance <= max(radius, float(distance.min()))
        x0, y0, x1, y1 = self.box
        inside = (xs + 0.5 >= x0 * width) & (xs + 0.5 <= x1 * width) & (ys + 0.5 >= y0 * height) & (
            ys + 0.5 <= y1 * height)
        if not inside.any():  # a box thinner than a pixel: the pixel under its centre
            inside[min(int((y0 + y1) / 2 * height), height - 1), min(int((x0 + x1) / 2 * width), width - 1)] = True
        return inside

    def record(self) -> dict:
        """JSON-able: ``{"point": [x, y]}`` or ``{"box": [x0, y0, x1, y1]}``."""
        return {"point": list(self.point)} if self.point is not None else {"box": list(self.box)}


def _fractions(name: str, value, length: int) -> tuple[float, ...]:
    """`value` as `length` finite floats in [0, 1], else a one-line `OptionError`."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != length:
        raise OptionError(f"{name} {value!r}: expected {length} fractions of the frame's width and height")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} {value!r}: expected {length} numbers") from None
    if any(isinstance(v, bool) for v in value) or not all(math.isfinite(v) and 0 <= v <= 1 for v in numbers):
        raise OptionError(f"{name} {_show(numbers)}: each value must be a fraction of the frame in [0, 1]")
    return numbers


def _show(numbers) -> str:
    return "(" + ", ".join(f"{v:.2f}" if math.isfinite(v) else str(v) for v in numbers) + ")"


class SplitClip:
    """What every backend receives: the clip and its camera motion, estimated once and shared.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        fps: frames per second.
        camera: `CameraMotion` (estimated on first use, with the pairwise flows kept).
        canvas, canvas_frames: the stabilised canvas and the frames on it (made on first use).
    """

    def __init__(self, frames: np.ndarray, fps: float, camera=None):
        self.frames = frames
        self.fps = float(fps)
        self._camera = camera
        self._canvas = None
        self._canvas_frames = None

    @property
    def camera(self):
        if self._camera is None:
            from .camera import estimate_camera

            self._camera = estimate_camera(self.frames)
        return self._camera

    @property
    def canvas(self):
        """The stabilised canvas of the clip (`plate.make_canvas`), made on first use and shared."""
        if self._canvas is None:
            from .plate import make_canvas

            self._canvas = make_canvas(self.camera)
        return self._canvas

    @property
    def canvas_frames(self) -> np.ndarray:
        """(T, Hc, Wc, 3) uint8: the frames on the `canvas` (`plate.Canvas.warp_frames`), warped on first use and
        shared by every clean plate of the clip."""
        if self._canvas_frames is None:
            self._canvas_frames = self.canvas.warp_frames(self.frames)
        return self._canvas_frames

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])
