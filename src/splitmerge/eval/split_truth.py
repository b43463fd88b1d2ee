"""Ground-truth clips for the Split stage: real backgrounds moved by virtual cameras, real cut-outs moving on paths.

A case is a *world* (a real photo, or a frame of a real clip, resized to leave room for the camera), a virtual
camera (static, pan, zoom, or handheld shake with a little roll), and a subject (a real cut-out with its matte,
`data.cutouts`) walking through the world along a path (walk, fast, slow, or pause: it stops mid-clip), with a
slight sway so it is not a rigid sticker. Each frame is rendered once, exactly:

    background_t = warp(world, A_t)                 A_t: the camera's world -> view map at frame t
    alpha_t, fg_t = warp(cut-out, A_t @ S_t)        S_t: the subject's cut-out -> world map (path, sway)
    frame_t = fg_t + (1 - alpha_t) * background_t + sensor noise

so the true matte, the true clean background and the camera are all known. Deterministic for a case's seed.

The hard cases (`HARD_CASES`) add, each exactly known too:
- a non-rigid subject (``warp``): a smooth time-varying shear, bend and vertical stretch of the cut-out about its
  feet, applied as one backward map (one resampling);
- a long stop (path ``stop``: it stands still for 40% of the clip, sway and bob easing out);
- a soft shadow (``shadow``): the matte sheared and squashed onto the ground behind the feet, blurred, giving a
  gain field ``effects`` (T, H, W) in (0, 1] (1 = untouched) that darkens the background only:
  ``frame = fg + (1 - alpha) * effects * background``; the true clean plate has no shadow;
- other movers (``movers``): more real cut-outs walking further back; they belong to the true background (the
  plate shows them moving), not to the matte;
- a moving real world (``video:<sample>@<frame>``): frames of a bundled clip, so the background has its own
  moving people and cars (part of the plate too);
- soft edges: motion blur (``motion_blur``: the subject averaged over sub-frame positions within the shutter, so
  the true matte is soft where it moves) and a wider soft edge of the cut-out itself (``soft_edge``, view px,
  applied at the cut-out's full resolution, which also anti-aliases its downscaling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..data.cutouts import load_cutout, load_photo
from ..data.shadows import ground_shadow
from ..errors import OptionError
from ..video.homography import similarity

CAMERAS = ("static", "pan", "zoom", "handheld")
PATHS = {"walk": 2.0, "fast": 5.0, "slow": 0.6, "pause": 2.5, "stop": 2.5}  # subject speed, world px/frame
STOP_SPAN = (0.3, 0.7)  # the ``stop`` path stands still over this share of the clip (40%)
PAN_SPEED = 2.0        # world px per frame
ZOOM_END = 1.3         # scale at the last frame of a zoom (first frame 1.0)
SHAKE_PX = 4.0         # handheld: translation amplitude, px
SHAKE_DEGREES = 1.0    # handheld: roll amplitude, degrees
SWAY_DEGREES = 3.0     # the subject's own sway while it moves, degrees
NOISE_SIGMA = 1.5      # sensor noise on the rendered frames (8-bit levels)
WARP_PERIODS = (23.0, 31.0, 19.0)  # frames: shear, bend, stretch of a non-rigid subject
SHADOW_SHEAR = 0.9     # shadow: horizontal lean per px of height above the feet
SHADOW_SQUASH = 0.35   # shadow: its height on the ground per px of the subject's height
SHADOW_BLUR = 3.5      # shadow: Gaussian softness, view px
BLUR_SAMPLES = 7       # motion blur: sub-frame positions averaged
MOVER_HEIGHT = 0.3     # other movers: height as a share of the view height
MOVER_SPEED = 1.5      # other movers: world px per frame (alternating directions)


@dataclass(frozen=True)
class TruthCase:
    """One ground-truth clip, by recipe.

    Attributes:
        name: short id (e.g. "pan-fast").
        background: ``"photo:<skimage.data name>"``, ``"clip:<sample name>@<frame>"`` (a frame of a real clip,
            still) or ``"video:<sample name>@<frame>"`` (the clip's frames from there on: a moving world).
        subject: a `data.cutouts.CUTOUTS` key.
        camera: one of `CAMERAS`.
        path: one of `PATHS`.
        frames, size: clip length and (H, W) of the view.
        subject_height: the subject's height as a share of the view height.
        flatten: Gaussian sigma (px) that smooths the world first: a low-texture background.
        seed: noise, shake and sway phases.
        warp: non-rigid subject, amplitude as a share of its size (0.1: 10% shear, bend and stretch); 0 = rigid.
        shadow: soft ground shadow strength, 1 - the darkest gain (0.45: down to 0.55); 0 = none.
        movers: other cut-outs (`data.cutouts.CUTOUTS` keys) walking further back, part of the true background.
        motion_blur: shutter as a share of the frame interval (1.0: open all frame long); 0 = sharp.
        soft_edge: extra softness of the cut-out's edge, Gaussian sigma in view px; 0 = its own edge only.
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
    warp: float = 0.0
    shadow: float = 0.0
    movers: tuple[str, ...] = ()
    motion_blur: float = 0.0
    soft_edge: float = 0.0

    def __post_init__(self):
        if self.camera not in CAMERAS:
            raise OptionError(f"camera {self.camera!r}: expected one of {', '.join(CAMERAS)}")
        if self.path not in PATHS:
            raise OptionError(f"path {self.path!r}: expected one of {', '.join(PATHS)}")
        if self.frames < 2:
            raise OptionError(f"frames {self.frames}: a clip needs at least 2")
        if not 0 <= self.shadow < 1:
            raise OptionError(f"shadow {self.shadow}: expected 0 <= shadow < 1 (the gain stays above 0)")
        if self.warp < 0 or self.motion_blur < 0 or self.soft_edge < 0:
            raise OptionError("warp, motion_blur and soft_edge must be >= 0")


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

HARD_CASES = (
    TruthCase("nonrigid-shadow", "photo:rocket", "astronaut", "static", "walk", warp=0.12, shadow=0.45),
    TruthCase("stop-shadow", "photo:coffee", "cat", "static", "stop", shadow=0.45, soft_edge=1.0),
    TruthCase("street-movers", "video:bikes@137", "astronaut", "static", "walk", movers=("cup",)),
    TruthCase("blur-pan-fast", "photo:stereo_motorcycle", "cat", "pan", "fast", motion_blur=1.0,
              soft_edge=1.0, shadow=0.35),
    TruthCase("street-stop-nonrigid", "video:bikes@137", "cup", "handheld", "stop", warp=0.1, shadow=0.45,
              movers=("cat",)),
    TruthCase("zoom-everything", "photo:rocket", "astronaut", "zoom", "walk", warp=0.08, shadow=0.45,
              movers=("cat",), motion_blur=1.0, soft_edge=1.0),
)


@dataclass
class TruthClip:
    """A rendered case.

    Attributes:
        frames: (T, H, W, 3) uint8, what a camera would have recorded.
        alpha: (T, H, W) float32 in [0, 1], the subject's true matte.
        background: (T, H, W, 3) uint8, the true clean background (the same camera, no subject, no shadow, no
            noise; other movers and a moving world are in it).
        fps: frames per second.
        case: the recipe.
        effects: (T, H, W) float32 in (0, 1], the true shadow gain on the background (1 = untouched; all ones
            without a shadow); None only for a clip built by hand.
    """

    frames: np.ndarray
    alpha: np.ndarray
    background: np.ndarray
    fps: float
    case: TruthCase
    effects: np.ndarray | None = None

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
    raise OptionError(f"background {spec!r}: expected photo:NAME, clip:SAMPLE@FRAME or video:SAMPLE@FRAME")


def load_worlds(spec: str, count: int) -> np.ndarray:
    """(N, H, W, 3) uint8: `count` frames of a ``video:SAMPLE@FRAME`` world, else the one still of `load_background`."""
    kind, _, name = spec.partition(":")
    if kind != "video":
        return load_background(spec)[None]
    from ..samples import sample_path
    from ..video.io import read_video

    sample, _, frame = name.partition("@")
    frames = read_video(sample_path(sample), start=int(frame or 0), max_frames=count).frames
    if len(frames) < count:
        raise OptionError(f"background {spec!r}: only {len(frames)} frames from there, the case needs {count}")
    return frames


def _cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize `image` to cover (height, width) keeping its aspect, then centre-crop."""
    scale = max(height / image.shape[0], width / image.shape[1])
    resized = cv2.resize(image, (int(np.ceil(image.shape[1] * scale)), int(np.ceil(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])


def smooth_wave(rng: np.random.Generator, count: int, periods=(17.0, 29.0, 43.0)) -> np.ndarray:
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
        center[:, 0] += SHAKE_PX * smooth_wave(rng, count, (7.0, 11.0, 19.0))
        center[:, 1] += SHAKE_PX * smooth_wave(rng, count, (5.0, 13.0, 23.0))
        rolls = SHAKE_DEGREES * smooth_wave(rng, count)
    view_center = ((width - 1) / 2, (height - 1) / 2)
    return np.stack([similarity(scales[t], rolls[t], center[t], view_center) for t in range(count)])


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
    if case.path == "stop":
        speed[int(round(STOP_SPAN[0] * count)): int(round(STOP_SPAN[1] * count))] = 0.0
    travelled = np.concatenate([[0.0], np.cumsum(speed[1:])])
    xs = (world_w - 1) / 2 + travelled - travelled[-1] / 2
    bob = 0.01 * height * smooth_wave(rng, count, (9.0, 15.0, 21.0))
    moving = np.convolve(speed > 0, np.ones(3) / 3, mode="same")  # the sway eases out when it stops
    if case.path == "stop":
        bob = bob * moving          # it stands really still (the old ``pause`` path keeps bobbing)
    ys = (world_h - 1) / 2 + 0.12 * height + bob
    sway = SWAY_DEGREES * smooth_wave(rng, count, (6.0, 10.0, 14.0)) * moving
    scale = case.subject_height * height / cutout_size[0]
    cutout_center = ((cutout_size[1] - 1) / 2, (cutout_size[0] - 1) / 2)
    return np.stack([similarity(scale, sway[t], cutout_center, (xs[t], ys[t])) for t in range(count)])


def mover_path(case: TruthCase, index: int, world_size: tuple[int, int], cutout_size: tuple[int, int]
               ) -> np.ndarray:
    """(T, 3, 3) cut-out -> world maps of the `index`-th other mover: smaller (further back), higher up, crossing
    the view at `MOVER_SPEED`, the first one right to left, the next left to right, and so on."""
    height, width = case.size
    world_h, world_w = world_size
    count = case.frames
    direction = -1.0 if index % 2 == 0 else 1.0
    offset = (0.18 + 0.12 * (index // 2)) * width * (1.0 if index % 2 == 0 else -1.0)
    xs = (world_w - 1) / 2 + offset + direction * MOVER_SPEED * (np.arange(count) - (count - 1) / 2)
    y = (world_h - 1) / 2 - (0.02 + 0.06 * index) * height
    scale = MOVER_HEIGHT * height / cutout_size[0]
    cutout_center = ((cutout_size[1] - 1) / 2, (cutout_size[0] - 1) / 2)
    return np.stack([similarity(scale, 0.0, cutout_center, (xs[t], y)) for t in range(count)])


def warp_params(case: TruthCase, times: np.ndarray) -> np.ndarray:
    """(len(times), 3): a non-rigid subject's (shear, bend, stretch) at (fractional) frame times: shear and bend
    as shares of its width at the top, stretch as a share of its height; smooth sines with seeded phases."""
    rng = np.random.default_rng([case.seed, 4])
    phases = rng.uniform(0, 2 * np.pi, 3)
    times = np.asarray(times, float)[:, None]
    return case.warp * np.sin(2 * np.pi * times / np.array(WARP_PERIODS) + phases)


def _deform_maps(inverse: np.ndarray, params, cutout_size, view_size) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps (view px -> cut-out px) for one placement: `inverse` (3, 3) takes view to *deformed* cut-out
    coordinates; the deformation's inverse then takes those to the cut-out. About the feet (bottom centre), a
    point `h` (0 at the feet, 1 at the top) above them is stretched by 1 + stretch and moved sideways by
    (shear * h + bend * h^2) x the cut-out's width."""
    cut_h, cut_w = cutout_size
    height, width = view_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    v = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    shear, bend, stretch = params
    feet = cut_h - 1.0
    v_source = feet - (feet - v) / (1.0 + stretch)
    rise = np.clip((feet - v_source) / feet, 0.0, None)
    u_source = u - (shear * rise + bend * rise * rise) * cut_w
    return u_source.astype(np.float32), v_source.astype(np.float32)


def _soften(cutout, sigma: float):
    """(rgb float32 premultiplied, alpha float32) of `cutout`, its edge softened by `sigma` cut-out px (0: as is):
    the matte blurred, the colour kept inside and filled from the nearest subject colours in the new soft rim."""
    alpha = cutout.alpha.astype(np.float32)
    premultiplied = cutout.rgb.astype(np.float32) * alpha[..., None]
    if sigma <= 0:
        return premultiplied, alpha
    soft_alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    spread = cv2.GaussianBlur(premultiplied, (0, 0), sigma) / np.maximum(soft_alpha, 1e-6)[..., None]
    straight = np.where(alpha[..., None] > 0.98, cutout.rgb.astype(np.float32), np.clip(spread, 0, 255))
    return straight * soft_alpha[..., None], soft_alpha


def _interpolate(maps: np.ndarray, t: int, offset: float) -> np.ndarray:
    """(3, 3): the map at fractional time t + offset, linear between neighbouring frames (extrapolated at the
    ends)."""
    count = len(maps)
    if count == 1 or offset == 0:
        return maps[t]
    if offset > 0:
        a, b = (t, t + 1) if t + 1 < count else (t - 1, t)
    else:
        a, b = (t - 1, t) if t > 0 else (t, t + 1)
    return maps[t] + offset * (maps[b] - maps[a])


def _place(premultiplied, alpha, placed: np.ndarray, view_size, maps=None):
    """(premultiplied rgb, alpha) of a cut-out warped into the view by `placed` (3, 3), or by backward `maps`."""
    height, width = view_size
    if maps is None:
        cut_alpha = cv2.warpAffine(alpha, placed[:2], (width, height), flags=cv2.INTER_LINEAR)
        colour = cv2.warpAffine(premultiplied, placed[:2], (width, height), flags=cv2.INTER_LINEAR)
    else:
        cut_alpha = cv2.remap(alpha, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        colour = cv2.remap(premultiplied, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return colour, np.clip(cut_alpha, 0, 1)


def shadow_gain(alpha: np.ndarray, feet: tuple[float, float], strength: float) -> np.ndarray:
    """(H, W) float32 in (0, 1]: the soft ground shadow of a (H, W) matte standing at `feet` (x, y, view px):
    the matte sheared sideways (`SHADOW_SHEAR`) and squashed (`SHADOW_SQUASH`) onto the ground behind the feet,
    blurred (`SHADOW_BLUR`; `data.shadows.ground_shadow`); gain 1 - strength where it is fully dark, exactly 1
    where it does not reach."""
    dark = ground_shadow(alpha, feet, SHADOW_SHEAR, SHADOW_SQUASH, SHADOW_BLUR)
    return (1.0 - strength * dark).astype(np.float32)


def render_case(case: TruthCase, fps: float = 25.0) -> TruthClip:
    """Render `case` exactly (see the module docstring)."""
    height, width = case.size
    cutout = load_cutout(case.subject)
    margin_w = PAN_SPEED * (case.frames - 1) if case.camera == "pan" else 0.0
    world_size = (int(round(height * 1.4)), int(round(width * 1.4 + margin_w)))
    worlds = [_cover(image, *world_size) for image in load_worlds(case.background, case.frames)]
    if case.flatten:
        worlds = [cv2.GaussianBlur(world, (0, 0), case.flatten) for world in worlds]
    cameras = camera_path(case, world_size)
    subjects = subject_path(case, world_size, cutout.size)
    scale = case.subject_height * height / cutout.size[0]
    premultiplied, cut_alpha = _soften(cutout, case.soft_edge / scale)
    movers = []
    for index, name in enumerate(case.movers):
        mover = load_cutout(name)
        movers.append((*_soften(mover, case.soft_edge * mover.size[0] / (MOVER_HEIGHT * height)),
                       mover_path(case, index, world_size, mover.size)))
    offsets = [0.0]
    if case.motion_blur > 0:
        offsets = list(case.motion_blur * (np.arange(BLUR_SAMPLES) / (BLUR_SAMPLES - 1) - 0.5))
    rng = np.random.default_rng([case.seed, 3])
    frames = np.empty((case.frames, height, width, 3), np.uint8)
    background = np.empty_like(frames)
    alpha = np.empty((case.frames, height, width), np.float32)
    effects = np.ones((case.frames, height, width), np.float32)
    feet_point = np.array([(cutout.size[1] - 1) / 2, cutout.size[0] - 1.0, 1.0])
    for t in range(case.frames):
        view = cameras[t][:2]
        background[t] = cv2.warpAffine(worlds[min(t, len(worlds) - 1)], view, (width, height),
                                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if movers:
            plate = background[t].astype(np.float32)
            for mover_rgb, mover_alpha, paths in movers:
                colour, matte = _place(mover_rgb, mover_alpha, cameras[t] @ paths[t], (height, width))
                plate = colour + (1 - matte[..., None]) * plate
            background[t] = np.clip(np.rint(plate), 0, 255).astype(np.uint8)
        foreground = np.zeros((height, width, 3), np.float32)
        matte = np.zeros((height, width), np.float32)
        for offset in offsets:
            placed = cameras[t] @ _interpolate(subjects, t, offset)
            maps = None
            if case.warp:
                maps = _deform_maps(np.linalg.inv(placed), warp_params(case, [t + offset])[0], cutout.size,
                                    (height, width))
            colour, sample = _place(premultiplied, cut_alpha, placed, (height, width), maps)
            foreground += colour / len(offsets)
            matte += sample / len(offsets)
        alpha[t] = np.clip(matte, 0, 1)
        if case.shadow:
            feet = cameras[t] @ subjects[t] @ feet_point
            effects[t] = shadow_gain(alpha[t], (feet[0], feet[1]), case.shadow)
        noise = rng.normal(0, NOISE_SIGMA, (height, width, 3))
        lit = background[t] * effects[t][..., None] if case.shadow else background[t]
        composed = foreground + (1 - alpha[t][..., None]) * lit + noise
        frames[t] = np.clip(np.rint(composed), 0, 255).astype(np.uint8)
    return TruthClip(frames, alpha, background, fps, case, effects)
