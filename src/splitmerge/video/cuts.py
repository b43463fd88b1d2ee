"""Scene-cut detection: a cut is where consecutive frames' colour distributions jump.

Each frame is summarised by a normalised histogram (hue x saturation, 16 x 8 bins, plus 16 value bins) of a
downscaled copy; two frames are across a cut when the Bhattacharyya distance of their histograms exceeds
`CUT_THRESHOLD`. On the bundled samples, bikes' five cuts score 0.35-0.78 while its ordinary frame pairs score
a median of 0.035 (and bigbuckbunny and carphone, which have no cuts, stay below 0.06).
"""

from __future__ import annotations

import cv2
import numpy as np

CUT_THRESHOLD = 0.25
_SIGNATURE_SIZE = (180, 120)  # (W, H) the frame is shrunk to before its histogram is taken


def frame_signature(frame: np.ndarray) -> np.ndarray:
    """(144,) float32 normalised colour histogram of an (H, W, 3) uint8 RGB frame."""
    small = cv2.resize(frame, _SIGNATURE_SIZE, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hue_saturation = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    value = cv2.calcHist([hsv], [2], None, [16], [0, 256]).ravel()
    histogram = np.concatenate([hue_saturation, value]).astype(np.float32)
    return histogram / max(float(histogram.sum()), 1.0)


class CutDetector:
    """Feed frames in order; `is_cut(frame)` is True when `frame` starts a new shot."""

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def is_cut(self, frame: np.ndarray) -> bool:
        signature = frame_signature(frame)
        previous, self._previous = self._previous, signature
        if previous is None:
            return False
        return cv2.compareHist(previous, signature, cv2.HISTCMP_BHATTACHARYYA) > self.threshold


def find_cuts(frames) -> list[int]:
    """Indices of the frames (of an iterable of (H, W, 3) frames) that start a new shot, excluding frame 0."""
    detector = CutDetector()
    return [index for index, frame in enumerate(frames) if detector.is_cut(frame)]
