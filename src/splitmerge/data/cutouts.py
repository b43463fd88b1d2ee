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
    """The cut-out `name` (see `CUTOUTS`), built on first use (about a second) and cached for the process."""
    if name not in CUTOUTS:
        raise OptionError(f"cut-out {name!r}: unknown; expected one of {', '.join(sorted(CUTOUTS))}")
    spec = CUTOUTS[name]
    photo = load_photo(spec.photo)
    hard = grabcut_matte(photo, spec.box)
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
