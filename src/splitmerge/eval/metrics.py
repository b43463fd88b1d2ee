"""Image and video quality metrics."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements of two equally shaped arrays (inf when identical).

    Accumulated frame by frame in float64, so a long clip needs no float copy of itself.
    """
    if reference.shape != test.shape:
        raise ShapeError(f"psnr: shapes differ, {reference.shape} vs {test.shape}")
    if reference.size == 0:
        raise ShapeError("psnr: empty arrays")
    reference = reference.reshape(-1, *reference.shape[-2:]) if reference.ndim > 2 else reference[None]
    test = test.reshape(reference.shape)
    squared = sum(float(np.square(r.astype(np.float64) - t.astype(np.float64)).sum())
                  for r, t in zip(reference, test, strict=True))
    mse = squared / reference.size
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
