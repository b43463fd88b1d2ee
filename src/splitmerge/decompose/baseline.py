"""The naive baseline, ``median``: what the default backends must beat (it is in the split benchmark's table).

Segmenter: align every frame to the reference by its one homography, take the per-pixel temporal median of the
aligned clip as the background, and threshold each frame's difference from it; a little morphology, and the
largest piece per frame. It fails where the issue says it does: a slow or pausing subject is part of the
median, and anything the homography does not explain (parallax, zoom blur) shows up as change.

Restorer: paste that same median, warped back into each frame, inside the (slightly grown) matte.
"""

from __future__ import annotations

import cv2
import numpy as np

from .backends import Backend, Segmentation, SplitClip, register
from .motion import SUBJECT_MIN_AREA, boxes_and_points
from .plate import clean_plate

THRESHOLD = 30     # 8-bit levels of max-channel difference from the median
HOLE_GROWTH = 2    # px the restorer grows the matte by


def median_background(clip: SplitClip, covered: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8: the temporal median of the camera-aligned clip, seen from each frame's view."""
    frames = clip.frames
    canvas = clip.canvas
    covered = np.zeros(frames.shape[:3], bool) if covered is None else covered
    plate, _ = clean_plate(frames, covered, canvas, clip.canvas_frames)
    return np.stack([canvas.to_frame(plate, t) for t in range(len(frames))])


@register("segmenter")
class MedianSegmenter(Backend):
    """Difference from the aligned temporal median, thresholded (the naive baseline)."""

    name = "median"
    description = "naive baseline: one homography per frame, temporal median, thresholded difference (no weights)"

    def __init__(self, all_objects: bool = False, threshold: int = THRESHOLD):
        self.all_objects = all_objects
        self.threshold = threshold

    def describe_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "all_objects": self.all_objects}

    def segment(self, clip: SplitClip, prior: np.ndarray | None = None, pick=None) -> Segmentation:
        # `pick`: part of the segmenter interface; this one cannot honour it (``can_pick`` is False).
        frames = clip.frames
        background = median_background(clip)
        difference = np.abs(frames.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
        alpha = np.zeros(frames.shape[:3], np.float32)
        for t, changed in enumerate(difference > self.threshold):
            mask = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
            count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
            if count < 2:
                continue
            if self.all_objects:
                alpha[t] = mask
            else:
                alpha[t] = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        present = (alpha > 0.5).mean(axis=(1, 2)) >= SUBJECT_MIN_AREA
        boxes, points = boxes_and_points(alpha)
        return Segmentation(alpha, boxes, points, found=bool(present.any()),
                            reason="" if present.any() else "no difference from the median",
                            info={"objects": int(present.any())})


@register("restorer")
class MedianRestorer(Backend):
    """Paste the aligned temporal median inside the matte (the naive baseline)."""

    name = "median"
    description = "naive baseline: the aligned temporal median pasted into the hole (no weights)"

    def restore(self, clip: SplitClip, alpha: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8: `clip` with the median background inside `alpha` (T, H, W) grown by 2 px."""
        kernel = np.ones((2 * HOLE_GROWTH + 1, 2 * HOLE_GROWTH + 1), np.uint8)
        hole = np.stack([cv2.dilate((a > 0.01).astype(np.uint8), kernel) > 0 for a in alpha])
        out = clip.frames.copy()
        if hole.any():
            background = median_background(clip)
            out[hole] = background[hole]
        return out
