"""Where a placed subject is held: on its spot of the screen, or of the world the background films.

``anchor="world"`` (docs/cli.md, "Moving shots"): positions, scales and trajectories are given in the background's
first frame and follow the scene: the background's camera is measured (`decompose.camera.track_camera`) and
carries each placed subject to its spot in every frame, its size following the zoom; the subject's own source
camera (the split's ``camera`` record, `video.layers.source_camera`) is removed first, so a subject filmed by a
panning camera walks the world as it walked its own. ``screen`` keeps the placement in frame coordinates (as
copy-paste always did); ``auto`` is ``world`` when the background's camera moves (`camera_moves`), else ``screen``.
The maps themselves: `video.homography.carried_matrices`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..decompose.camera import camera_moves, track_camera
from ..errors import MediaError, OptionError
from ..video.homography import apply_homography
from ..video.layers import source_camera
from ..video.transforms import subject_box

ANCHORS = ("auto", "world", "screen")


def check_anchor(anchor: str) -> None:
    if anchor not in ANCHORS:
        raise OptionError(f"anchor {anchor!r}: expected one of {', '.join(ANCHORS)}")


@dataclass
class Anchoring:
    """How subjects are held: `mode` "world" or "screen"; `camera` (T, 3, 3) the background's first frame -> frame
    t (None for "screen"); `moving`: whether the background's camera was measured to move (None: not measured)."""

    mode: str
    camera: np.ndarray | None
    moving: bool | None

    def record(self) -> dict:
        """JSON-able, for the result's meta."""
        return {"mode": self.mode, "camera_moves": self.moving}


def plan_anchoring(anchor: str, chunks, size: tuple[int, int], count: int, name: str = "background") -> Anchoring:
    """Decide the anchoring for a background of `count` frames of `size` (H, W), given as a zero-argument
    callable returning its (n, H, W, 3) uint8 chunks (read only when the camera must be measured)."""
    check_anchor(anchor)
    if anchor == "screen":
        return Anchoring("screen", None, None)
    camera = track_camera(chunks())
    if len(camera) < count:
        raise MediaError(f"{name}: ended after {len(camera)} frames; {count} were expected")
    moving = camera_moves(camera, size)
    if anchor == "auto" and not moving:
        return Anchoring("screen", None, False)
    return Anchoring("world", camera, moving)


def subject_camera(record, num_frames: int, count: int, name: str, size: tuple[int, int]) -> np.ndarray | None:
    """(count, 3, 3) a subject's own camera (its frame t -> its first frame) from its ``camera`` record (checked:
    `video.layers.source_camera`), or None when it has none. `num_frames` and `size` (H, W): the subject clip's;
    `name` names it in errors."""
    if record is None:
        return None
    return source_camera(record, num_frames, name, size)[:count]


class SubjectExtent:
    """The box a subject covers over its clip, in its first frame's coordinates (each frame's box carried there by
    the subject's own camera), fed a chunk of mattes at a time; its centre is the placement anchor (`place`'s
    ``center``). Without a camera it is the box `subject_center` measures."""

    def __init__(self, camera: np.ndarray | None = None):
        self.camera = camera
        self.size = (1, 1)
        self.low = np.full(2, np.inf)
        self.high = np.full(2, -np.inf)

    def add(self, alpha: np.ndarray, start: int) -> None:
        """Mattes (n, H, W) of frames `start`..`start` + n - 1."""
        self.size = alpha.shape[1:]
        for t, frame in enumerate(alpha):
            box = subject_box(frame)
            if box is None:
                continue
            right, bottom = box.left + box.width - 1, box.top + box.height - 1
            corners = np.array([[box.left, box.top], [right, box.top], [box.left, bottom], [right, bottom]], float)
            if self.camera is not None:
                corners = apply_homography(self.camera[start + t], corners)
            self.low = np.minimum(self.low, corners.min(axis=0))
            self.high = np.maximum(self.high, corners.max(axis=0))

    def center(self) -> tuple[float, float]:
        """(x, y) px: the centre of the box; the frame's centre when the subject never shows."""
        if not np.all(np.isfinite(self.low)):
            return (self.size[1] - 1) / 2, (self.size[0] - 1) / 2
        middle = (self.low + self.high) / 2
        return float(middle[0]), float(middle[1])


def placing(anchoring: Anchoring, record, num_frames: int, size: tuple[int, int], count: int, mattes, name: str
            ) -> dict:
    """`place`'s keywords for one subject of `count` frames: its anchor ``center`` (the centre of its box over the
    clip, `SubjectExtent`; in its first frame's coordinates when world-anchored) and, world-anchored, the
    background's ``camera`` and the subject's own ``source_camera`` (from `record`, its ``camera``; its clip has
    `num_frames` frames of `size` (H, W)). `mattes`: the subject's mattes as (first frame, (n, H, W)) chunks;
    `name` names the subject in errors."""
    world = anchoring.mode == "world"
    own = subject_camera(record, num_frames, count, name, size) if world else None
    extent = SubjectExtent(own)
    for start, alpha in mattes:
        extent.add(alpha, start)
    keywords = {"center": extent.center()}
    if world:
        keywords.update(camera=anchoring.camera, source_camera=own)
    return keywords


@dataclass
class Carried:
    """A world-anchored subject: `camera` (T, 3, 3) the background's first frame -> frame t, and `targets` (T, 2)
    px where its placement put its anchor, in first-frame coordinates (a method that moves the subject further,
    `placement="model"`, moves it there and lets the camera carry it: `merge.warp.hold_on_world`)."""

    camera: np.ndarray
    targets: np.ndarray


def carried_anchor(keywords: dict, position, subject_size: tuple[int, int], size: tuple[int, int], count: int
                   ) -> Carried | None:
    """The `Carried` of a subject of frame size `subject_size` placed at `position` (None, (x, y) or (T, 2)
    fractions: `place`'s) with `place` keywords `keywords` (`placing`; None unless world-anchored) on a background
    of `size` (H, W), over `count` frames."""
    if keywords.get("camera") is None:
        return None
    height, width = subject_size
    if position is None:
        position = np.asarray(keywords["center"]) / [max(width - 1, 1), max(height - 1, 1)]
    targets = np.broadcast_to(np.asarray(position, np.float64), (count, 2)) * [size[1] - 1, size[0] - 1]
    return Carried(keywords["camera"], targets)
