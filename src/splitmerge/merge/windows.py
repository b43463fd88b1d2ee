"""Windows over a clip and their cross-fade: how a Composer trained on clips of a fixed length covers any clip.

A clip of `count` frames is cut into the fewest windows of `window` frames overlapping by at least `overlap`
(`window_starts`: the first starts at 0, the last ends on the last frame; a clip shorter than a window is one
window padded by repeating its last frame, `window_frames`). What each window gives per frame (pixels, mattes,
a warp map's parameters) is joined by `CrossFade`: a weighted sum with ramps over the overlaps
(`window_weights`), divided by the summed weights.
"""

from __future__ import annotations

import math

import numpy as np

OVERLAP = 0.25  # of a window, cross-faded between neighbouring windows


def window_starts(count: int, window: int, overlap: int) -> list[int]:
    """First frames of the fewest windows of `window` frames that cover `count` frames overlapping by at least
    `overlap`, spread evenly (the first starts at 0, the last ends on the last frame)."""
    if count <= window:
        return [0]
    windows = math.ceil((count - overlap) / max(1, window - overlap))
    return sorted({round(i * (count - window) / (windows - 1)) for i in range(windows)})


def window_weights(window: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """(window,) cross-fade weights: ramps of `overlap` frames up at the start (unless first) and down at the end
    (unless last), 1 elsewhere; never 0, so normalising by the summed weights joins windows smoothly."""
    weights = np.ones(window, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    if overlap and not first:
        weights[:overlap] = np.minimum(weights[:overlap], ramp)
    if overlap and not last:
        weights[window - overlap:] = np.minimum(weights[window - overlap:], ramp[::-1])
    return weights


class CrossFade:
    """The windows of a clip of `count` frames for a Composer of `window` frames (`OVERLAP` of a window
    overlapping), and the running cross-faded sum of what each gives.

    `add(index, values)` takes window `index`'s values, frames first: (window, ...) or (keep, ...); `result()`
    divides by the summed weights (every frame is covered once all windows are added)."""

    def __init__(self, count: int, window: int):
        self.count, self.window = count, window
        self.overlap = int(window * OVERLAP)
        self.starts = window_starts(count, window, self.overlap)
        self.total = np.zeros(count, np.float32)
        self.sum: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def picks(self, index: int) -> np.ndarray:
        """(window,) the clip frames window `index` samples (the last frame repeated past the end)."""
        start = self.starts[index]
        return np.minimum(np.arange(start, start + self.window), self.count - 1)

    def kept(self, index: int) -> int:
        """How many of window `index`'s frames are clip frames (not the repeated last one)."""
        return min(self.window, self.count - self.starts[index])

    def weights(self, index: int) -> np.ndarray:
        """(kept,) window `index`'s cross-fade weights over its clip frames."""
        return window_weights(self.window, self.overlap, index == 0, index == len(self.starts) - 1)[:self.kept(index)]

    def add(self, index: int, values: np.ndarray) -> float:
        """Add window `index`'s per-frame `values` (frames first; frames past the clip's end are dropped).
        Returns the window's summed weight (to weigh a per-window value, such as a mirror choice, alike)."""
        keep, start = self.kept(index), self.starts[index]
        values = np.asarray(values, np.float32)[:keep]
        if self.sum is None:
            self.sum = np.zeros((self.count, *values.shape[1:]), np.float32)
        weights = self.weights(index)
        self.sum[start:start + keep] += weights.reshape(-1, *[1] * (values.ndim - 1)) * values
        self.total[start:start + keep] += weights
        return float(weights.sum())

    def result(self) -> np.ndarray:
        """(count, ...) the cross-faded values."""
        if self.sum is None or not self.total.all():
            raise RuntimeError("CrossFade.result: not every frame is covered by an added window")
        return self.sum / self.total.reshape(-1, *[1] * (self.sum.ndim - 1))
