"""Procedural scenes with exact ground truth, where the right placement and the right colour follow from the
background, so affordance and harmonization can be learned and measured.

A scene is a sky over a textured ground (a real texture photo laid in perspective below a horizon) under one
light that has a colour and a direction (a sun: `data.shadows`); the camera is still or pans slowly. Props (poles
and crates) stand on the ground, lit from the light's side and casting their shadows its way: the scene itself
shows where the light comes from and how big things are at each depth. A subject (a real cut-out or a textured
shape) stands on the ground and walks along it: its feet stay on the ground, its size follows its depth (zero at
the horizon, largest at the bottom of the frame) by the same law as the props' (one reference height per scene,
`ref_height`, times a size per kind of object, `SIZES`), its colours are multiplied by the light's and shaded
from its side, and it casts its shadow the same way as the props: the subject's effects on the scene
(`Layers.effects`, a gain over the background; the clean background has the props and their shadows but not the
subject's). Everything is known: the matte, the clean background, the effects, the subject's feet position and
height per frame, and the light.

Seeds below `BENCHMARK_SEED` (1,000,000) are for training data, seeds at or above it for benchmarks
(DESIGN.md). Same seed, same scene, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..decompose.filters import present_frames, verdict
from ..config_types import is_integer
from ..errors import OptionError
from ..video.layers import Layers
from .cutouts import CUTOUTS, load_cutout, load_photo
from .shadows import ground_shadow, side_light

BENCHMARK_SEED = 1_000_000
FPS = 16.0                 # the paper trains at 16 fps
GROUNDS = {"grass": ("grass", (0.45, 0.62, 0.30)), "gravel": ("gravel", (0.62, 0.58, 0.52)),
           "brick": ("brick", (0.70, 0.42, 0.32)), "sand": ("gravel", (0.86, 0.76, 0.55))}
LIGHTS = {"warm": (1.15, 0.98, 0.78), "cool": (0.82, 0.94, 1.15), "neutral": (1.0, 1.0, 1.0),
          "golden": (1.2, 0.92, 0.62), "dim": (0.62, 0.62, 0.70)}
SHAPES = ("striped ball", "checkered box")
# An object's height at the bottom edge of the frame, in units of the scene's `ref_height`: the same law for the
# props and the subject, so the props show the subject's size at every depth.
SIZES = {"astronaut": 1.0, "cat": 0.75, "cup": 0.7, "striped ball": 0.8, "checkered box": 0.85,
         "pole": 1.1, "crate": 0.5}
PROP_ASPECT = {"pole": 0.22, "crate": 0.9}   # width / height
SIDE_LIGHT = 0.25        # the lit side of an object is this much brighter (the far side this much darker)
PENUMBRA = 0.025         # shadow blur per px of the object's height (plus `MIN_PENUMBRA` px)
MIN_PENUMBRA = 0.6


@dataclass(frozen=True)
class SceneParams:
    """What a seed drew. Positions in pixels of the view; `light` multiplies RGB."""

    seed: int
    horizon: float            # y of the horizon, px
    ground: str
    light_name: str
    light: tuple[float, float, float]
    subject: str              # a cut-out name or a shape name
    max_height: float         # subject height at the bottom edge of the frame, px
    pan: float                # camera pan, px per frame (+: the view moves right)
    feet: list                # per frame (x, y) of the subject's feet, px
    heights: list             # per frame subject height, px
    ref_height: float = 0.0   # a size-1 object's height at the bottom edge, px (`SIZES`)
    shear: float = 0.0        # shadows: px sideways per px of height (+: they fall to the right)
    squash: float = 0.0       # shadows: px up the ground per px of height (-: towards the camera)
    darkness: float = 0.0     # shadows: 1 - the gain where one is fully dark
    props: tuple = ()         # ({"kind", "x" (world x at frame 0, px), "depth" in (0, 1], "colour"}, ...)

    def depth_law(self, height: int) -> tuple[float, float]:
        """(horizon row px, the subject's height per px of depth below it) in a view `height` px high: its
        height is ``per_depth * (feet y - horizon)`` (`eval.metrics.depth_scale_error`'s law)."""
        return float(self.horizon), float(self.max_height / (height - self.horizon))

    def caption(self) -> str:
        direction = "right" if self.feet[-1][0] > self.feet[0][0] else "left"
        depth = self.feet[-1][1] - self.feet[0][1]
        towards = " towards the camera" if depth > 4 else " away from the camera" if depth < -4 else ""
        noun = {"astronaut": "a person in a space suit", "cat": "a cat's head", "cup": "a cup of coffee"}.get(
            self.subject, f"a {self.subject}")
        camera = "The camera pans slowly." if abs(self.pan) > 0.2 else "The camera is still."
        return (f"{noun[0].upper()}{noun[1:]} moves to the {direction}{towards} across {self.ground} "
                f"under a {self.light_name} light. {camera}")


def _texture(name: str, tint: tuple[float, float, float], height: int, width: int) -> np.ndarray:
    """A real texture photo, tiled to (height, width), as float RGB in [0, 1] with the ground's colour."""
    gray = load_photo(GROUNDS[name][0])[..., 0].astype(np.float32) / 255.0
    reps = (int(np.ceil(height / gray.shape[0])), int(np.ceil(width / gray.shape[1])))
    tiled = np.tile(gray, reps)[:height, :width]
    tiled = 0.55 + 0.9 * (tiled - tiled.mean())
    return np.clip(tiled[..., None] * np.array(tint, np.float32), 0, 1)


def _world(params: SceneParams, height: int, world_width: int, rng: np.random.Generator) -> np.ndarray:
    """The scene without subject, (height, world_width, 3) float32 in [0, 1], before the light."""
    horizon = int(round(params.horizon))
    sky_top = np.array(rng.uniform([0.25, 0.45, 0.75], [0.45, 0.65, 0.95]), np.float32)
    haze = np.array([0.85, 0.88, 0.92], np.float32)
    ramp = np.linspace(0, 1, max(horizon, 1), dtype=np.float32)[:, None, None]
    sky = np.broadcast_to(sky_top * (1 - ramp) + haze * ramp, (max(horizon, 1), world_width, 3))
    # The ground: a flat texture laid in perspective (far rows squeezed towards the horizon).
    ground_h = height - horizon
    flat = _texture(params.ground, GROUNDS[params.ground][1], ground_h * 4, world_width * 3)
    source = np.float32([[0, 0], [flat.shape[1], 0], [flat.shape[1], flat.shape[0]], [0, flat.shape[0]]])
    target = np.float32([[-world_width, 0], [2 * world_width, 0], [world_width, ground_h], [0, ground_h]])
    ground = cv2.warpPerspective(flat, cv2.getPerspectiveTransform(source, target), (world_width, ground_h),
                                 flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    fade = np.linspace(0.35, 0, ground_h, dtype=np.float32)[:, None, None] ** 2  # haze near the horizon
    ground = ground * (1 - fade) + haze * fade
    return np.concatenate([sky[:horizon], ground], axis=0)


def _shape(name: str, rng: np.random.Generator, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A textured shape: (size, size, 3) uint8 and its matte (size, size) float32 with a soft edge."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    colours = rng.uniform(40, 230, (2, 3))
    if name == "striped ball":
        radius = size / 2 - 2
        alpha = np.clip(radius - np.hypot(xs - size / 2, ys - size / 2) + 0.5, 0, 1)
        pattern = ((xs + ys) // 14) % 2
    else:
        margin = size * 0.12
        alpha = np.clip(np.minimum.reduce([xs - margin, size - margin - xs, ys - margin, size - margin - ys]) + 0.5,
                        0, 1)
        pattern = ((xs // 20) + (ys // 20)) % 2
    rgb = np.where(pattern[..., None] > 0, colours[0], colours[1])
    shade = 0.75 + 0.25 * (1 - ys / size)  # lit from above
    return np.clip(rgb * shade[..., None], 0, 255).astype(np.uint8), alpha.astype(np.float32)


def _draw_props(rng: np.random.Generator, params: dict, frames: int, width: int) -> tuple:
    """Two or three props at world x (frame 0's view px) and depth; one that would stand in front of the
    subject's path is moved behind it (the subject is composited over the background, props included)."""
    path_x = np.array([x for x, _ in params["feet"]])
    near_depth = (min(y for _, y in params["feet"]) - params["horizon"]) / (params["height"] - params["horizon"])
    reach = 0.6 * max(params["heights"]) + 4
    span = (min(0.0, params["pan"] * frames) - 0.1 * width, width + max(0.0, params["pan"] * frames) + 0.1 * width)
    props = []
    for _ in range(int(rng.integers(2, 4))):
        kind = str(rng.choice(list(PROP_ASPECT)))
        x, depth = float(rng.uniform(*span)), float(rng.uniform(0.25, 1.0))
        colour = [float(c) for c in rng.uniform(0.25, 0.85, 3)]
        if depth > near_depth - 0.05 and path_x.min() - reach < x < path_x.max() + reach:
            depth = float(rng.uniform(0.12, max(0.13, near_depth - 0.1)))
        props.append({"kind": kind, "x": x, "depth": depth, "colour": colour})
    return tuple(sorted(props, key=lambda prop: prop["depth"]))  # far ones first


def draw_params(seed: int, frames: int, size: tuple[int, int]) -> SceneParams:
    """The scene a seed stands for (no pixels)."""
    height, width = size
    rng = np.random.default_rng([seed, 7])
    horizon = float(rng.uniform(0.3, 0.5) * height)
    subject = str(rng.choice(list(CUTOUTS) + list(SHAPES)))
    ref_height = float(rng.uniform(0.45, 0.8) * height)
    max_height = ref_height * SIZES[subject]
    pan = float(rng.choice([0.0, rng.uniform(-1.5, 1.5)]))
    # Feet walk along the ground: depth from just below the horizon (far) to the bottom edge (near).
    depth0 = rng.uniform(0.35, 0.85)
    depth1 = float(np.clip(depth0 + rng.uniform(-0.25, 0.25), 0.3, 0.95))
    x0 = rng.uniform(0.2, 0.8) * width
    speed = rng.uniform(0.8, 2.5) * rng.choice([-1, 1])
    t = np.linspace(0, 1, frames)
    depth = depth0 + (depth1 - depth0) * t
    feet_y = horizon + depth * (height - horizon)
    feet_x = x0 + speed * np.arange(frames) + pan * np.arange(frames)  # world x, so the pan carries it too
    heights = max_height * depth
    light_name = str(rng.choice(list(LIGHTS)))
    ground = str(rng.choice(list(GROUNDS)))
    shear = float(rng.uniform(0.3, 1.2) * rng.choice([-1, 1]))
    squash = float(rng.choice([-1, 1]) * rng.uniform(0.12, 0.45))
    darkness = float(rng.uniform(0.4, 0.7))
    feet = [[float(x), float(y)] for x, y in zip(feet_x, feet_y, strict=True)]
    heights = [float(h) for h in heights]
    props = _draw_props(rng, {"feet": feet, "heights": heights, "horizon": horizon, "height": height, "pan": pan},
                        frames, width)
    return SceneParams(seed, horizon, ground, light_name, LIGHTS[light_name], subject, max_height, pan, feet,
                       heights, ref_height, shear, squash, darkness, props)


MIN_SCENE_FRAMES = 2
MIN_SCENE_SIDE = 32


def _prop_matte(kind: str, feet: tuple[float, float], prop_height: float, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32: an upright box of `PROP_ASPECT` standing at `feet`, antialiased by a 1 px ramp."""
    height, width = size
    ys, xs = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    half = max(PROP_ASPECT[kind] * prop_height / 2, 0.6)
    inside_x = np.clip(half - np.abs(xs - feet[0]) + 0.5, 0, 1)
    inside_y = np.clip(np.minimum(ys - (feet[1] - prop_height), feet[1] - ys) + 0.5, 0, 1)
    return (inside_x * inside_y).astype(np.float32)


def _add_props(scene: np.ndarray, params: SceneParams, offset: float) -> np.ndarray:
    """The view `scene` (H, W, 3) float in [0, 1], already lit, with the props and their shadows, far to near."""
    height, width = scene.shape[:2]
    light = np.array(params.light, np.float32)
    for prop in params.props:
        feet = (prop["x"] - offset, params.horizon + prop["depth"] * (height - params.horizon))
        prop_height = params.ref_height * SIZES[prop["kind"]] * prop["depth"]
        matte = _prop_matte(prop["kind"], feet, prop_height, (height, width))
        if not matte.any():
            continue
        dark = ground_shadow(matte, feet, params.shear, params.squash, MIN_PENUMBRA + PENUMBRA * prop_height,
                             params.horizon)
        scene = scene * (1 - params.darkness * dark)[..., None]
        columns = np.flatnonzero(matte.max(axis=0) > 0)
        shade = np.ones(width, np.float32)
        shade[columns] = side_light(len(columns), params.shear, SIDE_LIGHT)
        colour = np.clip(np.array(prop["colour"], np.float32) * light * shade[None, :, None], 0, 1)
        scene = matte[..., None] * colour + (1 - matte[..., None]) * scene
    return scene


def render_scene(seed: int, frames: int = 49, size: tuple[int, int] = (240, 360)) -> tuple[Layers, SceneParams]:
    """Render scene `seed`: Layers (source, exact matte, premultiplied subject, clean background with the props,
    the subject's shadow as effects) and its parameters. Feet positions in the parameters are in view pixels."""
    if not is_integer(frames) or frames < MIN_SCENE_FRAMES:
        raise OptionError(f"frames {frames!r}: a synthetic scene needs at least {MIN_SCENE_FRAMES}")
    height, width = size
    if min(height, width) < MIN_SCENE_SIDE:
        raise OptionError(f"size {height}x{width}: a synthetic scene needs at least {MIN_SCENE_SIDE}x{MIN_SCENE_SIDE}")
    params = draw_params(seed, frames, size)
    rng = np.random.default_rng([seed, 8])
    offsets = params.pan * np.arange(frames)
    margin = int(np.ceil(np.abs(offsets).max())) + 2
    world = _world(params, height, width + 2 * margin, rng)
    light = np.array(params.light, np.float32)
    if params.subject in CUTOUTS:
        cutout = load_cutout(params.subject)
        subject_rgb, subject_alpha = cutout.rgb, cutout.alpha
    else:
        subject_rgb, subject_alpha = _shape(params.subject, rng)
    rows, cols = np.nonzero(subject_alpha > 0.5)
    bottom, centre = float(rows.max()), float(cols.mean())
    shade = np.ones(subject_alpha.shape[1], np.float32)
    shade[cols.min():cols.max() + 1] = side_light(cols.max() - cols.min() + 1, params.shear, SIDE_LIGHT)
    lit_subject = (np.clip(subject_rgb.astype(np.float32) / 255 * light * shade[None, :, None], 0, 1)
                   * subject_alpha[..., None])
    source_frames = np.empty((frames, height, width, 3), np.uint8)
    background = np.empty_like(source_frames)
    foreground = np.empty_like(source_frames)
    alpha = np.empty((frames, height, width), np.float32)
    effects = np.empty((frames, height, width), np.float32)
    view_feet = []
    for t in range(frames):
        view = np.float32([[1, 0, -(margin + offsets[t])], [0, 1, 0]])
        scene = cv2.warpAffine(world, view, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        scene = _add_props(np.clip(scene * light, 0, 1), params, offsets[t])
        x, y = params.feet[t][0] - offsets[t], params.feet[t][1]
        scale = params.heights[t] / (bottom + 1)
        matrix = np.float32([[scale, 0, x - scale * centre], [0, scale, y - scale * bottom]])
        a = np.clip(cv2.warpAffine(subject_alpha, matrix, (width, height), flags=cv2.INTER_AREA), 0, 1)
        fg = cv2.warpAffine(lit_subject, matrix, (width, height), flags=cv2.INTER_AREA)
        a = np.where(a < 1 / 255, 0, a)
        fg = fg * (a > 0)[..., None]
        dark = ground_shadow(a, (x, y), params.shear, params.squash, MIN_PENUMBRA + PENUMBRA * params.heights[t],
                             params.horizon)
        effects[t] = 1 - params.darkness * dark
        frame = fg + (1 - a[..., None]) * effects[t][..., None] * scene
        background[t] = np.rint(scene * 255).astype(np.uint8)
        foreground[t] = np.clip(np.rint(fg * 255), 0, 255).astype(np.uint8)
        source_frames[t] = np.clip(np.rint(frame * 255), 0, 255).astype(np.uint8)
        alpha[t] = a
        view_feet.append([float(x), float(y)])
    params = SceneParams(**{**asdict(params), "feet": view_feet})
    # The exact premultiplied subject (premultiplying the composite would mix background into soft edges).
    # The camera pans by offsets[t]: frame t's pixel x is frame 0's x - offsets[t] (layers.json "camera", t -> 0).
    camera = [[1.0, 0.0, round(float(offset), 6), 0.0, 1.0, 0.0, 0.0, 0.0, 1.0] for offset in offsets]
    layers = Layers(source_frames, alpha, foreground, background, FPS, params.caption(),
                    {"synthetic": asdict(params), "camera": camera}, effects)
    return layers, params


def write_scene(seed: int, directory: str | Path, frames: int = 49, size: tuple[int, int] = (240, 360)) -> dict:
    """Render scene `seed` into a Layers folder; returns the same meta as `split_to_folder` (filters, caption,
    num_frames, fps, backends, seconds)."""
    started = time.perf_counter()
    layers, params = render_scene(seed, frames, size)
    rendered = time.perf_counter()
    presence = float(present_frames(layers.alpha).mean())
    filters = verdict(True, layers.fg_ratio, presence)
    backends = {"synthetic": {"name": "synthetic", "version": 1, "seed": seed}}
    layers.meta.update(backends=backends, filters=filters)
    layers.save(directory)
    seconds = {"render": round(rendered - started, 3), "write": round(time.perf_counter() - rendered, 3)}
    return {"filters": filters, "caption": layers.caption, "num_frames": layers.num_frames, "fps": layers.fps,
            "backends": backends, "seconds": seconds, "path": str(directory)}
