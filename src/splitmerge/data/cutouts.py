"""Real objects with known mattes, cut out of the photos that scikit-image ships (no download).

Each cut-out is a real photo region (real texture, real shading) with a matte made once, deterministically, by
GrabCut from a fixed rectangle and kept to its largest piece, its edge softened by `EDGE_SIGMA` px. The matte is
then *the* truth by construction: whatever is composited with it is exactly the subject. Ground-truth clips (the
split benchmark) and synthetic scenes move these over real backgrounds.

Needs scikit-image (the ``data`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..errors import OptionError

EDGE_SIGMA = 1.0  # px, Gaussian softening of the cut-out's edge (a real subject's edge is never one pixel sharp)
GRABCUT_ITERATIONS = 5


@dataclass(frozen=True)
class CutoutSpec:
    """Where a cut-out comes from: a `skimage.data` photo and the (x, y, width, height) box around the object."""

    photo: str
    box: tuple[int, int, int, int]
    description: str


CUTOUTS = {
    "astronaut": CutoutSpec("astronaut", (130, 10, 300, 500), "a person in a space suit, head to waist"),
    "cat": CutoutSpec("chelsea", (60, 20, 330, 280), "a tabby cat's head"),
    "cup": CutoutSpec("coffee", (110, 20, 420, 320), "a cup of coffee on its saucer"),
}


@dataclass(frozen=True)
class Cutout:
    """An object and its matte, cropped to the matte's box.

    Attributes:
        name: key in `CUTOUTS`.
        rgb: (H, W, 3) uint8, the photo's pixels (straight, not premultiplied).
        alpha: (H, W) float32 in [0, 1].
    """

    name: str
    rgb: np.ndarray
    alpha: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return int(self.alpha.shape[0]), int(self.alpha.shape[1])


def load_photo(name: str) -> np.ndarray:
    """A colour photo shipped with scikit-image: (H, W, 3) uint8 RGB (grey photos are repeated to 3 channels)."""
    try:
        from skimage import data
    except ImportError as error:  # pragma: no cover - depends on the install
        raise OptionError("real photos need scikit-image: pip install 'splitmerge[data]'") from error
    loader = getattr(data, name, None)
    if loader is None:
        raise OptionError(f"photo {name!r}: not in skimage.data")
    image = loader()
    if isinstance(image, tuple):  # stereo pairs
        image = image[0]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def grabcut_matte(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) uint8 {0, 1}: GrabCut's foreground inside `box` (x, y, w, h), largest connected piece only.
    Deterministic: OpenCV's generator is seeded before the GMMs are initialised."""
    cv2.setRNGSeed(0)
    mask = np.zeros(image.shape[:2], np.uint8)
    background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mask, box, background_model, foreground_model,
                GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground)
    if count < 2:
        raise OptionError("grabcut found no object in the box")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == largest).astype(np.uint8)


@lru_cache(maxsize=None)
def load_cutout(name: str) -> Cutout:
    """The cut-out `name` (a `CUTOUTS` key, or ``shape:SEED`` for `procedural_cutout`), built on first use (about
    a second) and cached for the process."""
    kind, _, seed = name.partition(":")
    if kind == "shape" and seed.isdigit():
        return procedural_cutout(int(seed))
    if name in CLIP_CUTOUTS:
        return clip_cutout(name)
    if name not in CUTOUTS:
        raise OptionError(f"cut-out {name!r}: unknown; expected one of {', '.join(sorted(CUTOUTS))} or shape:SEED")
    spec = CUTOUTS[name]
    return _grabcut_cutout(name, load_photo(spec.photo), spec.box)


def _grabcut_cutout(name: str, photo: np.ndarray, box: tuple[int, int, int, int]) -> Cutout:
    """The object GrabCut finds in `box` of `photo`, closed, softened by `EDGE_SIGMA`, cropped to its matte."""
    hard = grabcut_matte(photo, box)
    hard = cv2.morphologyEx(hard, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    alpha = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), EDGE_SIGMA)
    alpha[alpha < 1 / 255] = 0
    ys, xs = np.nonzero(alpha)
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, alpha.shape[0])
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, alpha.shape[1])
    rgb, alpha = photo[y0:y1, x0:x1].copy(), alpha[y0:y1, x0:x1].copy()
    rgb.setflags(write=False)
    alpha.setflags(write=False)
    return Cutout(name, rgb, alpha)


# Photos whose pixels texture the procedural cut-outs. None of them is a photo the split benchmark uses (its
# backgrounds rocket, coffee, stereo_motorcycle and the bikes clip; its cut-outs astronaut, chelsea, coffee), so a
# model trained on shapes cut from these has seen nothing of the benchmark.
TEXTURE_PHOTOS = ("hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "camera", "grass", "gravel",
                  "brick", "moon", "coins", "clock", "cell", "clip:bigbuckbunny@10", "clip:bigbuckbunny@60",
                  "clip:bigbuckbunny@110", "clip:carphone@30", "clip:carphone@90")
SHAPE_SUPERSAMPLE = 4  # shapes are drawn this much larger, then averaged down: an anti-aliased edge


def _shape_matte(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float32 in [0, 1]: a body, a head and 1-4 limbs of random widths and angles (a subject with
    thin parts that bend), anti-aliased."""
    scale = SHAPE_SUPERSAMPLE
    canvas = np.zeros((height * scale, width * scale), np.uint8)
    centre = (width * scale // 2, int(height * scale * rng.uniform(0.5, 0.62)))
    body = (int(width * scale * rng.uniform(0.22, 0.38)), int(height * scale * rng.uniform(0.18, 0.3)))
    cv2.ellipse(canvas, centre, body, float(rng.uniform(-20, 20)), 0, 360, 255, -1)
    head_radius = int(min(width, height) * scale * rng.uniform(0.1, 0.18))
    head = (centre[0] + int(rng.normal(0, body[0] * 0.3)), centre[1] - body[1] - int(head_radius * 0.6))
    cv2.circle(canvas, head, head_radius, 255, -1)
    for _ in range(int(rng.integers(1, 5))):
        angle = rng.uniform(0, 2 * np.pi)
        start = (centre[0] + int(np.cos(angle) * body[0] * 0.7), centre[1] + int(np.sin(angle) * body[1] * 0.7))
        length = rng.uniform(0.25, 0.5) * height * scale
        bend = angle + rng.uniform(-0.8, 0.8)
        middle = (int(start[0] + np.cos(angle) * length / 2), int(start[1] + np.sin(angle) * length / 2))
        end = (int(middle[0] + np.cos(bend) * length / 2), int(middle[1] + np.sin(bend) * length / 2))
        thickness = max(2, int(min(width, height) * scale * rng.uniform(0.03, 0.1)))
        cv2.line(canvas, start, middle, 255, thickness)
        cv2.line(canvas, middle, end, 255, max(2, int(thickness * rng.uniform(0.5, 1.0))))
    small = cv2.resize(canvas.astype(np.float32) / 255, (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(cv2.GaussianBlur(small, (0, 0), EDGE_SIGMA), 0, 1).astype(np.float32)


@lru_cache(maxsize=None)
def _texture_photo(name: str) -> np.ndarray:
    """A `TEXTURE_PHOTOS` entry: a skimage photo, or ``clip:SAMPLE@FRAME`` (a frame of a bundled sample clip)."""
    kind, _, rest = name.partition(":")
    if kind != "clip":
        return load_photo(name)
    from ..samples import sample_path
    from ..video.io import read_video

    sample, _, frame = rest.partition("@")
    return read_video(sample_path(sample), start=int(frame), max_frames=1).frames[0]


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: a random crop of a `TEXTURE_PHOTOS` photo, re-coloured (a random tint and gain)
    and shaded by a soft vertical gradient."""
    photo = _texture_photo(str(rng.choice(TEXTURE_PHOTOS)))
    crop_h = int(min(photo.shape[0], max(32, height * rng.uniform(0.5, 1.5))))
    crop_w = int(min(photo.shape[1], max(32, width * rng.uniform(0.5, 1.5))))
    top = int(rng.integers(0, photo.shape[0] - crop_h + 1))
    left = int(rng.integers(0, photo.shape[1] - crop_w + 1))
    patch = cv2.resize(photo[top:top + crop_h, left:left + crop_w], (width, height), interpolation=cv2.INTER_LINEAR)
    tint = rng.uniform(0.4, 1.3, 3) * rng.uniform(0.6, 1.2)
    shade = np.linspace(rng.uniform(0.9, 1.15), rng.uniform(0.6, 1.0), height, dtype=np.float32)[:, None, None]
    coloured = patch.astype(np.float32) * tint * shade + rng.uniform(-30, 30, 3)
    return np.clip(coloured, 0, 255).astype(np.uint8)


# Real subjects from frames of the bundled sample clips (the benchmark uses none of these frames' subjects):
# name -> (sample, frame, GrabCut box (x, y, w, h) in the frame's pixels). Training material for learned parts.
CLIP_CUTOUTS = {
    "rabbit-40": ("bigbuckbunny", 40, (190, 36, 360, 540)),
    "rabbit-90": ("bigbuckbunny", 90, (150, 4, 400, 646)),
    "rabbit-125": ("bigbuckbunny", 125, (256, 36, 384, 614)),
    "man-30": ("carphone", 30, (40, 12, 96, 130)),
    "man-90": ("carphone", 90, (30, 10, 110, 132)),
}


def clip_cutout(name: str) -> Cutout:
    """A `CLIP_CUTOUTS` subject: GrabCut in its box on that frame, as `load_cutout` does for photos."""
    sample, frame, box = CLIP_CUTOUTS[name]
    photo = _texture_photo(f"clip:{sample}@{frame}")
    return _grabcut_cutout(name, photo, box)


def procedural_cutout(seed: int) -> Cutout:
    """A made-up subject, ``shape:SEED``: a random body with limbs (`_shape_matte`) textured by a re-coloured crop
    of a real photo (`_texture`), about 240 px high. Exact matte by construction; deterministic for `seed`.
    Training material for learned Split parts: unlimited, and disjoint from the benchmark's photos."""
    rng = np.random.default_rng([seed, 71])
    height = int(rng.integers(180, 300))
    width = int(height * rng.uniform(0.5, 1.1))
    alpha = _shape_matte(rng, height, width)
    rgb = _texture(rng, height, width)
    ys, xs = np.nonzero(alpha > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgb, alpha = rgb[y0:y1, x0:x1].copy(), alpha[y0:y1, x0:x1].copy()
    rgb.setflags(write=False)
    alpha.setflags(write=False)
    return Cutout(f"shape:{seed}", rgb, alpha)
