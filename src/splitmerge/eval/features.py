"""The paper's five composition metrics, with offline backends that need no weights.

The paper measures them with ViCLIP features, a Video Swin action classifier and a learned optical flow. Those
weights are not available offline, so each metric here names its backend in its key (``fg_identity@appearance``)
and is a documented proxy for the paper's number, never to be mistaken for it:

- ``fg_identity@appearance`` (higher is better, 0-100): cosine x 100 between appearance descriptors of the input
  subject layer and of the subject in the result. Descriptor: a joint Lab colour histogram (8x8x8 bins,
  weighted by the matte) and a grid of gradient-orientation histograms over the subject's box (4x4 cells x 9
  orientations, HOG-like), each square-rooted and unit-normalised, concatenated with equal weight.
- ``bg_identity@appearance`` (higher is better, 0-100): the same descriptor of the input background and of the
  result, with the subjects of both blacked out in both (the paper's protocol).
- ``fg_motion@flow`` (lower is better): KL divergence between the distributions of the subject's own motion in
  the input layer and in the result: DIS flow vectors inside the matte, binned by direction folded left-right
  (5 bins from straight up to straight down) and by speed relative to the subject's size (5). A composition
  may mirror and rescale a subject (placing it is the task), and the paper's action classifier calls a mirrored
  or larger walk the same walk; in pixel vectors it would be a different motion entirely.
- ``bg_motion@dis`` (lower is better): mean squared difference (px^2) between the DIS optical flow of the input
  background and of the result, on pixels outside both subjects (the paper: Perceiver IO / RAFT flow MSE).
- ``text_alignment@minilm`` (higher is better, 0-100): cosine x 100 between MiniLM sentence embeddings of the
  prompt and of the result's measured caption (what the ``measured`` captioner says of it). Weak by nature: the
  measured caption names no objects.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..decompose.camera import dis_flow, to_gray
from ..video.layers import premultiply

COLOUR_BINS = 8
GRID = 4
ORIENTATIONS = 9
FRAME_STEP = 4  # descriptors sample every 4th frame


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.sqrt(np.maximum(vector, 0))
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def appearance_descriptor(frames: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 and (T, H, W) weights in [0, 1] -> a unit descriptor (colour + gradient layout)."""
    frames, weight = frames[::FRAME_STEP], weight[::FRAME_STEP].astype(np.float32)
    colour = np.zeros(COLOUR_BINS ** 3, np.float64)
    gradients = np.zeros(GRID * GRID * ORIENTATIONS, np.float64)
    for frame, w in zip(frames, weight, strict=True):
        if w.sum() <= 0:
            continue
        lab = cv2.cvtColor(frame, cv2.COLOR_RGB2Lab)  # 8-bit Lab: every channel 0-255
        index = (lab // (256 // COLOUR_BINS)).astype(np.int64)
        flat = (index[..., 0] * COLOUR_BINS + index[..., 1]) * COLOUR_BINS + index[..., 2]
        colour += np.bincount(flat.ravel(), weights=w.ravel(), minlength=COLOUR_BINS ** 3)
        ys, xs = np.nonzero(w > 0.5)
        if len(ys) < 16:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        gray = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
        gray = cv2.resize(gray * w[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_AREA)
        gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
        magnitude = np.hypot(gx, gy)
        angle = (np.arctan2(gy, gx) % np.pi) / np.pi * ORIENTATIONS
        cell = (np.arange(64) * GRID // 64)
        orientation = np.minimum(angle, ORIENTATIONS - 1e-3).astype(int)
        cells = (cell[:, None] * GRID + cell[None, :]) * ORIENTATIONS + orientation
        gradients += np.bincount(cells.ravel(), weights=magnitude.ravel(), minlength=gradients.size)
    return np.concatenate([_unit(colour), _unit(gradients)]) / np.sqrt(2)


def identity_score(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine x 100 of two descriptors (0-100 for these non-negative descriptors)."""
    return float(100 * np.dot(first, second))


def flow_field(frames: np.ndarray) -> np.ndarray:
    """(T-1, H, W, 2) DIS flow between consecutive frames."""
    gray = to_gray(frames)
    return np.stack([dis_flow(gray[t], gray[t + 1]) for t in range(len(gray) - 1)])


def motion_histogram(flows: np.ndarray, weight: np.ndarray, speed_edges=(0.01, 0.04, 0.1, 0.25),
                     directions: int = 5) -> np.ndarray:
    """Distribution (sums to 1, lightly smoothed) of flow vectors (T-1, H, W, 2) inside the matte `weight`
    (T-1, H, W): `directions` bins of the angle from straight up to straight down with left and right folded
    together, x 5 bins of speed in units of the subject's size (the square root of its matte area, per frame)."""
    size = np.sqrt(np.maximum(weight.reshape(len(weight), -1).sum(axis=1), 1.0))[:, None, None]
    speed = np.hypot(flows[..., 0], flows[..., 1]) / size
    angle = np.arctan2(flows[..., 1], np.abs(flows[..., 0]))  # [-pi/2, pi/2]
    direction = np.minimum(((angle + np.pi / 2) / np.pi * directions).astype(int), directions - 1)
    bins = np.digitize(speed, speed_edges) * directions + direction
    histogram = np.bincount(bins.ravel(), weights=weight.ravel(), minlength=directions * (len(speed_edges) + 1))
    histogram = histogram + 1e-3 * max(histogram.sum(), 1)
    return histogram / histogram.sum()


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


def paper_metrics(input_fg: np.ndarray, input_alpha: np.ndarray, background: np.ndarray, result: np.ndarray,
                  result_alpha: np.ndarray, prompt: str = "", result_caption: str | None = None) -> dict:
    """The five proxies (module docstring) for one composed clip.

    Args:
        input_fg: (T, H, W, 3) uint8 premultiplied subject layer as given; input_alpha its matte (T, H, W).
        background: (T, H, W, 3) uint8 the background as given.
        result: (T, H, W, 3) uint8 the composed clip; result_alpha: where the subject is in it.
        prompt, result_caption: for text alignment (skipped when either is missing).
    """
    scores = {}
    # The result's subject as a layer like the input's (premultiplied, black around it), so both are measured
    # the same way: identical inputs then score the best possible.
    result_fg = premultiply(result, result_alpha)
    scores["fg_identity@appearance"] = identity_score(appearance_descriptor(input_fg, input_alpha),
                                                      appearance_descriptor(result_fg, result_alpha))
    keep = 1.0 - np.maximum(input_alpha > 0.01, result_alpha > 0.01)
    scores["bg_identity@appearance"] = identity_score(appearance_descriptor(background, keep),
                                                      appearance_descriptor(result, keep))
    scores["fg_motion@flow"] = kl_divergence(motion_histogram(flow_field(input_fg), input_alpha[:-1]),
                                             motion_histogram(flow_field(result_fg), result_alpha[:-1]))
    background_flow, result_flow = flow_field(background), flow_field(result)
    outside = keep[:-1] > 0
    scores["bg_motion@dis"] = float(np.square(background_flow - result_flow)[outside].sum(axis=-1).mean()) \
        if outside.any() else float("nan")
    if prompt and result_caption:
        from ..merge.text import default_encoder

        embeddings = default_encoder().encode([prompt, result_caption])
        scores["text_alignment@minilm"] = float(100 * (embeddings[0] @ embeddings[1]))
    return scores
