"""Ground truth for composition in moving shots: where a placed subject must be, frame by frame, when the
background's camera moves (docs/cli.md, "Moving shots"; `benchmarks/anchor.py`).

A case is a real photo (scikit-image) filmed by a virtual camera whose every frame is known (pan, zoom, handheld
shake with roll, a slow rotation, pan with zoom), and a subject: a real cut-out standing still in its own clip,
which is filmed over another photo by a still or a panning camera (so its layer slides across its own frame while
it stands still in its world). The subject's Layers carry the camera its clip's split would record (measured from
its frames, `decompose.camera.CameraChain`), never the true one. The user places the subject on the background's
first frame (`position`, `scale`); the truth is that subject standing on that spot of the scene in every frame:
its layer moved by the true camera, its size following the zoom.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..data.cutouts import load_cutout
from ..decompose.camera import CameraChain, estimate_camera
from ..errors import OptionError
from ..video.geometry import apply_resize, plan_resize
from ..video.homography import apply_homography, similarity, translation
from ..video.layers import Layers, Video
from ..video.transforms import subject_center
from .split_truth import NOISE_SIGMA, load_worlds, smooth_wave

CAMERAS = ("pan", "zoom", "handheld", "rotation", "pan-zoom", "still")
SOURCE_CAMERAS = ("still", "pan")
PAN_SPEED = 2.5          # px per frame
ZOOM_END = 1.3           # the last frame's scale against the first's
SHAKE_PX = 5.0           # handheld: translation amplitude, px
SHAKE_DEGREES = 1.5      # handheld: roll amplitude, degrees
ROLL_END = 8.0           # rotation: degrees by the last frame
SOURCE_PAN_SPEED = 2.0   # px per frame, the subject's own camera


@dataclass(frozen=True)
class AnchorCase:
    """One moving-shot case: `background` a ``photo:NAME`` (`skimage.data`) or ``video:SAMPLE@FRAME`` (a real
    street whose own movers move through the shot; `split_truth.load_worlds`), `subject` a cut-out
    (`data.cutouts`), `camera` one of `CAMERAS`, `source_camera` one of `SOURCE_CAMERAS` (the subject's own
    clip, filmed over `source`), `offset` where the subject stands against the middle frame's centre (fractions
    of the width and height), `subject_height` its height against the frame's."""

    name: str
    background: str
    subject: str
    camera: str
    source_camera: str = "still"
    source: str = "photo:grass"
    offset: tuple[float, float] = (0.15, 0.08)
    subject_height: float = 0.4
    frames: int = 49
    size: tuple[int, int] = (240, 360)
    seed: int = 0

    def __post_init__(self):
        if self.camera not in CAMERAS:
            raise OptionError(f"camera {self.camera!r}: expected one of {', '.join(CAMERAS)}")
        if self.source_camera not in SOURCE_CAMERAS:
            raise OptionError(f"source camera {self.source_camera!r}: expected one of {', '.join(SOURCE_CAMERAS)}")


ANCHOR_CASES = (
    AnchorCase("pan", "photo:coffee", "astronaut", "pan"),
    AnchorCase("zoom", "photo:rocket", "cat", "zoom", offset=(0.2, 0.1)),
    AnchorCase("handheld", "photo:stereo_motorcycle", "cup", "handheld"),
    AnchorCase("rotation", "photo:astronaut", "cup", "rotation", offset=(0.2, 0.1)),
    AnchorCase("pan-zoom", "photo:chelsea", "astronaut", "pan-zoom", offset=(-0.15, 0.08)),
    AnchorCase("pan-source-pan", "photo:coffee", "cat", "pan", source_camera="pan", offset=(-0.15, 0.05)),
    AnchorCase("street-pan", "video:bikes@137", "astronaut", "pan", offset=(0.1, 0.05)),
    AnchorCase("street-pan-zoom-source-pan", "video:bikes@137", "cup", "pan-zoom", source_camera="pan",
               offset=(0.15, 0.1)),
)


@dataclass
class AnchorClip:
    """A rendered case.

    Attributes:
        background: the background video (T, H, W, 3), filmed by the case's camera.
        subject: the subject's Layers (its own clip, true matte, the measured ``camera`` record).
        position: (x, y) fractions of the first frame where the subject's anchor is placed; scale: `compose`'s.
        camera: (T, 3, 3) the true map of the background's first frame to frame t.
        truth_alpha: (T, H, W) float32, the subject standing on its spot in every frame.
    """

    background: Video
    subject: Layers
    position: tuple[float, float]
    scale: float
    camera: np.ndarray
    truth_alpha: np.ndarray


def camera_path(case: AnchorCase, world_size: tuple[int, int]) -> np.ndarray:
    """(T, 3, 3) the world -> view maps of the case's virtual camera (centred on the world, moving about it)."""
    height, width = case.size
    count = case.frames
    rng = np.random.default_rng([case.seed, 7])
    centre = np.tile([(world_size[1] - 1) / 2, (world_size[0] - 1) / 2], (count, 1)).astype(float)
    scales, rolls = np.ones(count), np.zeros(count)
    progress = np.linspace(-0.5, 0.5, count)
    if case.camera in ("pan", "pan-zoom"):
        centre[:, 0] += progress * PAN_SPEED * (count - 1)
    if case.camera in ("zoom", "pan-zoom"):
        scales = np.geomspace(1.0, ZOOM_END if case.camera == "zoom" else np.sqrt(ZOOM_END), count)
    if case.camera == "handheld":
        centre[:, 0] += SHAKE_PX * smooth_wave(rng, count, (7.0, 11.0, 19.0))
        centre[:, 1] += SHAKE_PX * smooth_wave(rng, count, (5.0, 13.0, 23.0))
        rolls = SHAKE_DEGREES * smooth_wave(rng, count, (17.0, 29.0, 43.0))
    if case.camera == "rotation":
        rolls = np.linspace(0.0, ROLL_END, count)
    view_centre = ((width - 1) / 2, (height - 1) / 2)
    return np.stack([similarity(scales[t], rolls[t], centre[t], view_centre) for t in range(count)])


def _film(worlds: np.ndarray, views: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None = None
          ) -> np.ndarray:
    """(T, H, W, 3) uint8: the world (`worlds` (N, h, w, 3): one still, or one frame per view) seen through each
    of `views` (T, 3, 3), with sensor noise when `rng` is given."""
    height, width = size
    frames = np.empty((len(views), height, width, 3), np.uint8)
    for t, view in enumerate(views):
        frame = cv2.warpAffine(worlds[min(t, len(worlds) - 1)], view[:2], (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        if rng is not None:
            frame += rng.normal(0, NOISE_SIGMA, frame.shape)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


def _world(spec: str, size: tuple[int, int], count: int, pan: float) -> np.ndarray:
    """(N, h, w, 3): the world, 1.4 times the view and wider by the pan's travel: a ``photo:NAME`` (N = 1) or the
    frames of a ``video:SAMPLE@FRAME`` (N = `count`; its own movers move through it), held still on its first
    frame by its own measured camera (so the virtual camera is the only one; what is left of the real camera's
    motion is part of the world, not of the truth)."""
    height, width = size
    world_size = (int(round(height * 1.4)), int(round(width * 1.4 + pan * (count - 1))))
    images = load_worlds(spec, count)
    if len(images) > 1:
        own = estimate_camera(images, keep_flows=False)
        images = np.stack([own.warp(image, t, 0, border_value=0) if t else image for t, image in enumerate(images)])
        images = np.where(images.any(axis=3, keepdims=True), images, images[:1])  # fill the edges from frame 0
    plan = plan_resize(images.shape[1:3], world_size, "cover")
    return np.stack([apply_resize(image, plan) for image in images])


def _subject_clip(case: AnchorCase) -> tuple[Layers, np.ndarray, np.ndarray]:
    """The subject's own clip: the cut-out standing still in the middle of its world, filmed by the case's source
    camera. Returns its Layers (with the measured camera record), and its premultiplied colour (h, w, 3) float32
    and matte (h, w) as placed in the clip's first frame (full-frame canvases)."""
    height, width = case.size
    count = case.frames
    pan = SOURCE_PAN_SPEED if case.source_camera == "pan" else 0.0
    world = _world(case.source, case.size, count, pan)
    centre = np.array([(world.shape[2] - 1) / 2, (world.shape[1] - 1) / 2])
    progress = np.linspace(-0.5, 0.5, count)
    views = np.stack([translation([(width - 1) / 2 - centre[0] - progress[t] * pan * (count - 1),
                                   (height - 1) / 2 - centre[1]]) for t in range(count)])
    cutout = load_cutout(case.subject)
    factor = case.subject_height * height / cutout.size[0]
    # the cut-out's feet stand a little below the world's middle
    stand = similarity(factor, 0.0, ((cutout.size[1] - 1) / 2, cutout.size[0] - 1.0),
                       (centre[0], centre[1] + 0.3 * case.subject_height * height))
    colour = cutout.rgb.astype(np.float32) * cutout.alpha[..., None]
    frames, alphas = _film(world, views, case.size), np.empty((count, height, width), np.float32)
    first = None
    for t in range(count):
        placed = views[t] @ stand
        matte = np.clip(cv2.warpAffine(cutout.alpha, placed[:2], (width, height), flags=cv2.INTER_LINEAR), 0, 1)
        premultiplied = cv2.warpAffine(colour, placed[:2], (width, height), flags=cv2.INTER_LINEAR)
        frames[t] = np.clip(np.rint(premultiplied + (1 - matte[..., None]) * frames[t]), 0, 255).astype(np.uint8)
        alphas[t] = matte
        if t == 0:
            first = (premultiplied, matte)
    background = _film(world, views, case.size)
    chain = CameraChain()
    chain.add(0, estimate_camera(frames, keep_flows=False), count)   # what the clip's split records
    layers = Layers.from_matte(frames, alphas, background, 25.0, f"a {case.subject}", {"camera": chain.record()})
    return layers, first[0], first[1]


def render_anchor_case(case: AnchorCase) -> AnchorClip:
    """Render `case` exactly (see the module docstring)."""
    height, width = case.size
    count = case.frames
    pan = PAN_SPEED if case.camera in ("pan", "pan-zoom") else 0.0
    world = _world(case.background, case.size, count, pan)
    views = camera_path(case, world.shape[1:3])
    background = _film(world, views, case.size, np.random.default_rng([case.seed, 5]))
    camera = np.stack([view @ np.linalg.inv(views[0]) for view in views])   # first frame -> frame t
    subject, _, first_matte = _subject_clip(case)
    # The spot: the point `offset` off the middle frame's centre, seen from the first frame.
    middle = views[count // 2] @ np.linalg.inv(views[0])
    spot = apply_homography(np.linalg.inv(middle), [(width - 1) * (0.5 + case.offset[0]),
                                                     (height - 1) * (0.5 + case.offset[1])])
    anchor = np.array(subject_center(first_matte))
    placement = translation(spot - anchor)   # scale 1: the subject keeps its size against the frame
    truth = np.empty((count, height, width), np.float32)
    for t in range(count):
        moved = camera[t] @ placement
        truth[t] = np.clip(cv2.warpAffine(first_matte, moved[:2], (width, height), flags=cv2.INTER_LINEAR), 0, 1)
    position = (float(spot[0] / (width - 1)), float(spot[1] / (height - 1)))
    return AnchorClip(Video(background, 25.0), subject, position, 1.0, camera, truth)


def matte_centroid(alpha: np.ndarray) -> np.ndarray:
    """(x, y) px: the matte's centre of mass, (H, W) -> (2,); NaN when empty."""
    mass = float(alpha.sum())
    if mass <= 0:
        return np.full(2, np.nan)
    ys, xs = np.mgrid[:alpha.shape[0], :alpha.shape[1]]
    return np.array([(xs * alpha).sum() / mass, (ys * alpha).sum() / mass])


def inside_frames(alpha: np.ndarray, border: int = 2) -> np.ndarray:
    """(T,) bool: frames whose matte stays off the frame's `border` px (the whole subject is in view)."""
    edge = np.ones(alpha.shape[1:], bool)
    edge[border:-border, border:-border] = False
    return (alpha > 0.01).any(axis=(1, 2)) & ~(alpha[:, edge] > 0.01).any(axis=1)


def anchor_errors(result_alpha: np.ndarray, truth_alpha: np.ndarray) -> dict:
    """How far a result's subject strays from where it stands in the truth, over the frames where the truth shows
    it whole (`inside_frames`): ``drift`` the RMS distance of the mattes' centroids (px), ``size_error`` the mean
    |sqrt(area ratio) - 1|, ``frames`` how many frames counted. (T, H, W) each."""
    keep = inside_frames(truth_alpha)
    if not keep.any():
        raise OptionError("anchor_errors: the truth never shows the whole subject")
    distances, sizes = [], []
    for result, truth in zip(result_alpha[keep], truth_alpha[keep], strict=True):
        found = matte_centroid(result)
        distances.append(np.inf if np.isnan(found).any() else float(np.linalg.norm(found - matte_centroid(truth))))
        sizes.append(abs(np.sqrt(result.sum() / truth.sum()) - 1.0))
    return {"drift": float(np.sqrt(np.mean(np.square(distances)))), "size_error": float(np.mean(sizes)),
            "frames": int(keep.sum())}


# ------------------------------------------------------------------------------------------------------ occlusion


@dataclass(frozen=True)
class OcclusionCase:
    """A still shot of `background` where the cut-out `mover` (`mover_height` of the frame high) walks across,
    its feet at `mover_feet` of the frame height, in front of where the subject (`subject`, `subject_height`
    high) is placed with its feet at `subject_feet` (further from the camera: higher in the frame)."""

    name: str = "walk-in-front"
    background: str = "photo:stereo_motorcycle"
    mover: str = "astronaut"
    subject: str = "cup"
    mover_height: float = 0.6
    mover_feet: float = 0.97
    subject_height: float = 0.3
    subject_feet: float = 0.75
    frames: int = 49
    size: tuple[int, int] = (240, 360)


@dataclass
class OcclusionClip:
    """A rendered occlusion case: the `background` video (the mover walking through it), the `subject` Layers (its
    own still clip), where it is placed (`position`, `scale` 1), the mover's true matte (T, H, W) and the truth:
    the subject's visible matte (T, H, W), behind the mover; `subject_alpha` (H, W) the whole placed subject."""

    background: Video
    subject: Layers
    position: tuple[float, float]
    scale: float
    mover_alpha: np.ndarray
    truth_alpha: np.ndarray
    subject_alpha: np.ndarray


def render_occlusion_case(case: OcclusionCase = OcclusionCase()) -> OcclusionClip:
    """Render `case` exactly (a still camera: the subject's spot is the same in every frame)."""
    height, width = case.size
    count = case.frames
    world = _world(case.background, case.size, count, 0.0)[0]
    scenery = apply_resize(world, plan_resize(world.shape[:2], case.size, "cover"))
    mover = load_cutout(case.mover)
    factor = case.mover_height * height / mover.size[0]
    xs = np.linspace(-0.1 * width, 1.1 * width, count)   # walks in from the left, out on the right
    colour = mover.rgb.astype(np.float32) * mover.alpha[..., None]
    rng = np.random.default_rng(11)
    frames = np.empty((count, height, width, 3), np.uint8)
    movers = np.empty((count, height, width), np.float32)
    for t in range(count):
        feet = similarity(factor, 0.0, ((mover.size[1] - 1) / 2, mover.size[0] - 1.0),
                          (xs[t], case.mover_feet * height))
        matte = np.clip(cv2.warpAffine(mover.alpha, feet[:2], (width, height), flags=cv2.INTER_LINEAR), 0, 1)
        premultiplied = cv2.warpAffine(colour, feet[:2], (width, height), flags=cv2.INTER_LINEAR)
        noisy = scenery.astype(np.float32) + rng.normal(0, NOISE_SIGMA, scenery.shape)
        frames[t] = np.clip(np.rint(premultiplied + (1 - matte[..., None]) * noisy), 0, 255).astype(np.uint8)
        movers[t] = matte
    subject_case = AnchorCase("subject", "photo:coffee", case.subject, "still", subject_height=case.subject_height,
                              frames=count, size=case.size)
    subject, _, first_matte = _subject_clip(subject_case)
    anchor = np.array(subject_center(first_matte))
    feet = np.flatnonzero((first_matte > 0.5).any(axis=1))[-1]
    spot = np.array([(width - 1) / 2, case.subject_feet * height - (feet - anchor[1])])
    moved = translation(spot - anchor)
    placed = np.clip(cv2.warpAffine(first_matte, moved[:2], (width, height), flags=cv2.INTER_LINEAR), 0, 1)
    truth = (placed[None] * (1 - movers)).astype(np.float32)
    position = (float(spot[0] / (width - 1)), float(spot[1] / (height - 1)))
    return OcclusionClip(Video(frames, 25.0), subject, position, 1.0, movers, truth, placed)


def visible_iou(result_alpha: np.ndarray, clip: OcclusionClip) -> dict:
    """The visible subject's IoU (mattes > 0.5) of a result (T, H, W) against the truth of `clip`: ``all`` (mean
    over its frames) and ``occluded`` (mean over the frames where the mover hides at least 5% of the subject),
    with the frame counts."""
    whole = clip.subject_alpha > 0.5
    ious, hidden = [], []
    for result, truth, mover in zip(result_alpha > 0.5, clip.truth_alpha > 0.5, clip.mover_alpha > 0.5, strict=True):
        union = (result | truth).sum()
        ious.append(float((result & truth).sum() / union) if union else 1.0)
        hidden.append(bool((mover & whole).sum() >= 0.05 * whole.sum()))
    ious, hidden = np.array(ious), np.array(hidden)
    return {"all": float(ious.mean()), "occluded": float(ious[hidden].mean()) if hidden.any() else float("nan"),
            "frames": int(len(ious)), "occluded_frames": int(hidden.sum())}
