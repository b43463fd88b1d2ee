"""Cast shadows on a flat ground under a distant light (a sun): one concept shared by the synthetic training
scenes (`data.synthetic`) and the split benchmark's ground truth (`eval.split_truth`).

A distant light projects every point of an upright object onto the ground along one direction. In the image,
with the object's feet at (fx, fy), a point ``h`` px above the feet lands ``shear * h`` px sideways and
``squash * h`` px up the ground (towards the horizon; negative: towards the camera) from the feet:

    x' = x + shear * (fy - y),      y' = fy - squash * (fy - y)

The light comes from the side opposite the shadow: a shadow falling to the right (shear > 0) is cast by a light
on the left, which lights the object's left side.
"""

from __future__ import annotations

import cv2
import numpy as np

FAINT = 1e-3  # darkness below this is exactly 0, so the gain is exactly 1 where the shadow does not reach


def ground_shadow(alpha: np.ndarray, feet: tuple[float, float], shear: float, squash: float, blur: float,
                  horizon: float | None = None) -> np.ndarray:
    """The shadow's darkness, (H, W) float32 in [0, 1], of an upright object with matte `alpha` (H, W) standing
    at `feet` (x, y px): the matte projected onto the ground (module docstring) and blurred by a Gaussian of
    `blur` px (the penumbra). Nothing falls above `horizon` (y px) when it is given."""
    height, width = alpha.shape
    fx, fy = feet
    onto_ground = np.array([[1.0, -shear, shear * fy], [0.0, squash, fy * (1 - squash)]])
    cast = cv2.warpAffine(alpha.astype(np.float32), onto_ground, (width, height), flags=cv2.INTER_LINEAR)
    dark = np.clip(cv2.GaussianBlur(cast, (0, 0), blur), 0, 1)
    if horizon is not None:
        dark[: max(0, int(np.ceil(horizon)))] = 0.0
    dark[dark < FAINT] = 0.0
    return dark


def side_light(width: int, shear: float, strength: float) -> np.ndarray:
    """(width,) float32 gains across an object's columns lit from the side opposite its shadow: 1 + strength at
    the lit edge, 1 - strength at the far edge, 1 in the middle (flat shading of a rounded object)."""
    across = np.linspace(-1.0, 1.0, max(width, 1), dtype=np.float32)
    return (1.0 - strength * float(np.sign(shear)) * across).astype(np.float32)
