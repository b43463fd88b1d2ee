"""Ground-truth clips for the Split stage: real backgrounds moved by virtual cameras, real cut-outs moving on paths.

A case is a *world* (a real photo, or a frame of a real clip, resized to leave room for the camera), a virtual
camera (static, pan, zoom, or handheld shake with a little roll), and a subject (a real cut-out with its matte,
`data.cutouts`) walking through the world along a path (walk, fast, slow, or pause: it stops mid-clip), with a
slight sway so it is not a rigid sticker. Each frame is rendered once, exactly:

    background_t = warp(world, A_t)                 A_t: the camera's world -> view map at frame t
    alpha_t, fg_t = warp(cut-out, A_t @ S_t)        S_t: the subject's cut-out -> world map (path, sway)
    frame_t = fg_t + (1 - alpha_t) * background_t + sensor noise

so the true matte, the true clean background and the camera are all known. Deterministic for a case's seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..data.cutouts import load_cutout, load_photo
from ..errors import OptionError

CAMERAS = ("static", "pan", "zoom", "handheld")
PATHS = {"walk": 2.0, "fast": 5.0, "slow": 0.6, "pause": 2.5}  # subject speed, world px per frame
PAN_SPEED = 2.0        # world px per frame
ZOOM_END = 1.3         # scale at the last frame of a zoom (first frame 1.0)
SHAKE_PX = 4.0         # handheld: translation amplitude, px
SHAKE_DEGREES = 1.0    # handheld: roll amplitude, degrees
SWAY_DEGREES = 3.0     # the subject's own sway while it moves, degrees
NOISE_SIGMA = 1.5      # sensor noise on the rendered frames (8-bit levels)


@dataclass(frozen=True)
class TruthCase:
    """One ground-truth clip, by recipe.

    Attributes:
        name: short id (e.g. "pan-fast").
        background: ``"photo:<skimage.data name>"`` or ``"clip:<sample name>@<frame>"`` (a frame of a real clip).
        subject: a `data.cutouts.CUTOUTS` key.
        camera: one of `CAMERAS`.
        path: one of `PATHS`.
        frames, size: clip length and (H, W) of the view.
        subject_height: the subject's height as a share of the view height.
        flatten: Gaussian sigma (px) that smooths the world first: a low-texture background.
        seed: noise, shake and sway phases.
    """

    name: str
    background: str
    subject: str
    camera: str
    path: str
    frames: int = 49
    size: tuple[int, int] = (240, 360)
    subject_height: float = 0.55
    flatten: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.camera not in CAMERAS:
            raise OptionError(f"camera {self.camera!r}: expected one of {', '.join(CAMERAS)}")
        if self.path not in PATHS:
            raise OptionError(f"path {self.path!r}: expected one of {', '.join(PATHS)}")
        if self.frames < 2:
            raise OptionError(f"frames {self.frames}: a clip needs at least 2")


BENCHMARK_CASES = (
    TruthCase("static-walk", "photo:rocket", "astronaut", "static", "walk"),
    TruthCase("static-slow", "photo:stereo_motorcycle", "cat", "static", "slow"),
    TruthCase("static-pause", "clip:bikes@137", "astronaut", "static", "pause"),
    TruthCase("flat-walk", "photo:coffee", "astronaut", "static", "walk", flatten=8.0),
    TruthCase("pan-walk", "photo:rocket", "cup", "pan", "walk"),
    TruthCase("pan-fast", "clip:bikes@137", "cat", "pan", "fast"),
    TruthCase("zoom-walk", "photo:stereo_motorcycle", "astronaut", "zoom", "walk"),
    TruthCase("zoom-slow", "photo:rocket", "cat", "zoom", "slow"),
    TruthCase("handheld-walk", "photo:coffee", "astronaut", "handheld", "walk"),
    TruthCase("handheld-slow", "clip:bikes@137", "cup", "handheld", "slow"),
)


@dataclass
class TruthClip:
    """A rendered case.

    Attributes:
        frames: (T, H, W, 3) uint8, what a camera would have recorded.
        alpha: (T, H, W) float32 in [0, 1], the subject's true matte.
        background: (T, H, W, 3) uint8, the true clean background (the same camera, no subject, no noise).
        fps: frames per second.
        case: the recipe.
    """

    frames: np.ndarray
    alpha: np.ndarray
    background: np.ndarray
    fps: float
    case: TruthCase

    def describe(self) -> dict:
        return {**asdict(self.case), "fg_ratio": float(self.alpha.mean())}


def load_background(spec: str) -> np.ndarray:
    """(H, W, 3) uint8 from ``photo:NAME`` or ``clip:SAMPLE@FRAME``."""
    kind, _, name = spec.partition(":")
    if kind == "photo":
        return load_photo(name)
    if kind == "clip":
        from ..samples import sample_path
        from ..video.io import read_video

        sample, _, frame = name.partition("@")
        return read_video(sample_path(sample), start=int(frame or 0), max_frames=1).frames[0]
    raise OptionError(f"background {spec!r}: expected photo:NAME or clip:SAMPLE@FRAME")


def _cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize `image` to cover (height, width) keeping its aspect, then centre-crop."""
    scale = max(height / image.shape[0], width / image.shape[1])
    resized = cv2.resize(image, (int(np.ceil(image.shape[1] * scale)), int(np.ceil(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])


def _similarity(scale: float, degrees: float, source_center, target_center) -> np.ndarray:
    """(3, 3): rotate by `degrees` and scale about `source_center`, landing it on `target_center`."""
    matrix = np.eye(3)
    matrix[:2] = cv2.getRotationMatrix2D((0.0, 0.0), degrees, scale)
    to_origin = np.array([[1, 0, -source_center[0]], [0, 1, -source_center[1]], [0, 0, 1]], float)
    to_target = np.array([[1, 0, target_center[0]], [0, 1, target_center[1]], [0, 0, 1]], float)
    return to_target @ matrix @ to_origin


def _smooth_wave(rng: np.random.Generator, count: int, periods=(17.0, 29.0, 43.0)) -> np.ndarray:
    """(count,) a smooth wobble in [-1, 1]: a sum of slow sines with random phases."""
    t = np.arange(count)
    wave = sum(np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) for period in periods)
    return wave / len(periods)


def camera_path(case: TruthCase, world_size: tuple[int, int]) -> np.ndarray:
    """(T, 3, 3) world -> view maps of the virtual camera."""
    height, width = case.size
    world_h, world_w = world_size
    rng = np.random.default_rng([case.seed, 1])
    count = case.frames
    center = np.tile([(world_w - 1) / 2, (world_h - 1) / 2], (count, 1)).astype(float)
    scales, rolls = np.ones(count), np.zeros(count)
    progress = np.linspace(-0.5, 0.5, count)
    if case.camera == "pan":
        center[:, 0] += progress * PAN_SPEED * (count - 1)
    elif case.camera == "zoom":
        scales = np.linspace(1.0, ZOOM_END, count)
    elif case.camera == "handheld":
        center[:, 0] += SHAKE_PX * _smooth_wave(rng, count, (7.0, 11.0, 19.0))
        center[:, 1] += SHAKE_PX * _smooth_wave(rng, count, (5.0, 13.0, 23.0))
        rolls = SHAKE_DEGREES * _smooth_wave(rng, count)
    view_center = ((width - 1) / 2, (height - 1) / 2)
    return np.stack([_similarity(scales[t], rolls[t], center[t], view_center) for t in range(count)])


def subject_path(case: TruthCase, world_size: tuple[int, int], cutout_size: tuple[int, int]) -> np.ndarray:
    """(T, 3, 3) cut-out -> world maps: the subject walks left to right through the middle of the world, lower
    half, swaying a little while it moves; on the ``pause`` path it stops for the middle third of the clip."""
    height = case.size[0]
    world_h, world_w = world_size
    rng = np.random.default_rng([case.seed, 2])
    count = case.frames
    speed = np.full(count, PATHS[case.path])
    if case.path == "pause":
        speed[count // 3: 2 * count // 3] = 0.0
    travelled = np.concatenate([[0.0], np.cumsum(speed[1:])])
    xs = (world_w - 1) / 2 + travelled - travelled[-1] / 2
    ys = (world_h - 1) / 2 + 0.12 * height + 0.01 * height * _smooth_wave(rng, count, (9.0, 15.0, 21.0))
    moving = np.convolve(speed > 0, np.ones(3) / 3, mode="same")  # the sway eases out when it stops
    sway = SWAY_DEGREES * _smooth_wave(rng, count, (6.0, 10.0, 14.0)) * moving
    scale = case.subject_height * height / cutout_size[0]
    cutout_center = ((cutout_size[1] - 1) / 2, (cutout_size[0] - 1) / 2)
    return np.stack([_similarity(scale, sway[t], cutout_center, (xs[t], ys[t])) for t in range(count)])


def render_case(case: TruthCase, fps: float = 25.0) -> TruthClip:
    """Render `case` exactly (see the module docstring)."""
    height, width = case.size
    cutout = load_cutout(case.subject)
    margin_w = PAN_SPEED * (case.frames - 1) if case.camera == "pan" else 0.0
    world_size = (int(round(height * 1.4)), int(round(width * 1.4 + margin_w)))
    world = _cover(load_background(case.background), *world_size)
    if case.flatten:
        world = cv2.GaussianBlur(world, (0, 0), case.flatten)
    cameras = camera_path(case, world_size)
    subjects = subject_path(case, world_size, cutout.size)
    premultiplied = cutout.rgb.astype(np.float32) * cutout.alpha[..., None]
    rng = np.random.default_rng([case.seed, 3])
    frames = np.empty((case.frames, height, width, 3), np.uint8)
    background = np.empty_like(frames)
    alpha = np.empty((case.frames, height, width), np.float32)
    for t in range(case.frames):
        view = cameras[t][:2]
        background[t] = cv2.warpAffine(world, view, (width, height), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT)
        placed = (cameras[t] @ subjects[t])[:2]
        alpha[t] = np.clip(cv2.warpAffine(cutout.alpha, placed, (width, height), flags=cv2.INTER_LINEAR), 0, 1)
        foreground = cv2.warpAffine(premultiplied, placed, (width, height), flags=cv2.INTER_LINEAR)
        noise = rng.normal(0, NOISE_SIGMA, (height, width, 3))
        composed = foreground + (1 - alpha[t][..., None]) * background[t] + noise
        frames[t] = np.clip(np.rint(composed), 0, 255).astype(np.uint8)
    return TruthClip(frames, alpha, background, fps, case)
