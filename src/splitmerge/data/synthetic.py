"""Procedural scenes with exact ground truth, where the right placement and the right colour follow from the
background, so affordance and harmonization can be learned and measured.

A scene is a sky over a textured ground (a real texture photo laid in perspective below a horizon), all lit by
one light colour; the camera is still or pans slowly. A subject (a real cut-out or a textured shape) stands on
the ground and walks along it: its feet stay on the ground, its size follows its depth (zero at the horizon,
largest at the bottom of the frame), and its colours are multiplied by the scene's light. Everything is known:
the matte, the clean background, the subject's feet position and height per frame, and the light.

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

BENCHMARK_SEED = 1_000_000
FPS = 16.0                 # the paper trains at 16 fps
GROUNDS = {"grass": ("grass", (0.45, 0.62, 0.30)), "gravel": ("gravel", (0.62, 0.58, 0.52)),
           "brick": ("brick", (0.70, 0.42, 0.32)), "sand": ("gravel", (0.86, 0.76, 0.55))}
LIGHTS = {"warm": (1.15, 0.98, 0.78), "cool": (0.82, 0.94, 1.15), "neutral": (1.0, 1.0, 1.0),
          "golden": (1.2, 0.92, 0.62), "dim": (0.62, 0.62, 0.70)}
SHAPES = ("striped ball", "checkered box")


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


def draw_params(seed: int, frames: int, size: tuple[int, int]) -> SceneParams:
    """The scene a seed stands for (no pixels)."""
    height, width = size
    rng = np.random.default_rng([seed, 7])
    horizon = float(rng.uniform(0.3, 0.5) * height)
    subject = str(rng.choice(list(CUTOUTS) + list(SHAPES)))
    max_height = float(rng.uniform(0.45, 0.8) * height)
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
    return SceneParams(seed, horizon, str(rng.choice(list(GROUNDS))), light_name, LIGHTS[light_name], subject,
                       max_height, pan, [[float(x), float(y)] for x, y in zip(feet_x, feet_y, strict=True)],
                       [float(h) for h in heights])


MIN_SCENE_FRAMES = 2
MIN_SCENE_SIDE = 32


def render_scene(seed: int, frames: int = 49, size: tuple[int, int] = (240, 360)) -> tuple[Layers, SceneParams]:
    """Render scene `seed`: Layers (source, exact matte, premultiplied subject, clean background) and its
    parameters. Feet positions in the parameters are in view pixels."""
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
    lit_subject = np.clip(subject_rgb.astype(np.float32) / 255 * light, 0, 1) * subject_alpha[..., None]
    rows, cols = np.nonzero(subject_alpha > 0.5)
    bottom, centre = float(rows.max()), float(cols.mean())
    source_frames = np.empty((frames, height, width, 3), np.uint8)
    background = np.empty_like(source_frames)
    foreground = np.empty_like(source_frames)
    alpha = np.empty((frames, height, width), np.float32)
    view_feet = []
    for t in range(frames):
        view = np.float32([[1, 0, -(margin + offsets[t])], [0, 1, 0]])
        scene = cv2.warpAffine(world, view, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        scene = np.clip(scene * light, 0, 1)
        x, y = params.feet[t][0] - offsets[t], params.feet[t][1]
        scale = params.heights[t] / (bottom + 1)
        matrix = np.float32([[scale, 0, x - scale * centre], [0, scale, y - scale * bottom]])
        a = np.clip(cv2.warpAffine(subject_alpha, matrix, (width, height), flags=cv2.INTER_AREA), 0, 1)
        fg = cv2.warpAffine(lit_subject, matrix, (width, height), flags=cv2.INTER_AREA)
        a = np.where(a < 1 / 255, 0, a)
        fg = fg * (a > 0)[..., None]
        frame = fg + (1 - a[..., None]) * scene
        background[t] = np.rint(scene * 255).astype(np.uint8)
        foreground[t] = np.clip(np.rint(fg * 255), 0, 255).astype(np.uint8)
        source_frames[t] = np.clip(np.rint(frame * 255), 0, 255).astype(np.uint8)
        alpha[t] = a
        view_feet.append([float(x), float(y)])
    params = SceneParams(**{**asdict(params), "feet": view_feet})
    # The exact premultiplied subject (premultiplying the composite would mix background into soft edges).
    layers = Layers(source_frames, alpha, foreground, background, FPS, params.caption(),
                    {"synthetic": asdict(params)})
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
