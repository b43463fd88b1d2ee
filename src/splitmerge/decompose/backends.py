"""The backend registry of the Split stage: a name maps to a class; each class says whether it can run here.

Four kinds of backend, each a small interface:

- ``segmenter``: finds the moving subject. Constructed with ``all_objects`` (keep every moving object, not
  only the dominant one); ``segment(clip, prior=None) -> Segmentation``, where `prior` (T, H, W) float32,
  when given, is a matte the result should agree with where it is non-zero (the previous window's subject on
  overlapping frames), so a long video keeps one subject.
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

KINDS = ("segmenter", "refiner", "restorer", "captioner")

# Modules that define built-in backends; each registers its classes on import.
BUILTIN_MODULES = (
    "splitmerge.decompose.motion",
    "splitmerge.decompose.restore",
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


class SplitClip:
    """What every backend receives: the clip and its camera motion, estimated once and shared.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        fps: frames per second.
        camera: `CameraMotion` (estimated on first use, with the pairwise flows kept).
    """

    def __init__(self, frames: np.ndarray, fps: float, camera=None):
        self.frames = frames
        self.fps = float(fps)
        self._camera = camera

    @property
    def camera(self):
        if self._camera is None:
            from .camera import estimate_camera

            self._camera = estimate_camera(self.frames)
        return self._camera

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])
