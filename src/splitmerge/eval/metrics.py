"""Image and video quality metrics."""

from __future__ import annotations

import math

import cv2
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


def _binary(masks: np.ndarray, threshold: float) -> np.ndarray:
    masks = np.asarray(masks)
    return masks > threshold if masks.dtype != bool else masks


def mask_iou(predicted: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """J (region similarity, as in DAVIS): the mean over frames of intersection over union of two masks.

    Args:
        predicted, truth: (T, H, W) mattes in [0, 1] (thresholded at `threshold`) or bool masks.
    A frame where both masks are empty scores 1 (nothing to find, nothing found).
    """
    if predicted.shape != truth.shape:
        raise ShapeError(f"mask_iou: shapes differ, {predicted.shape} vs {truth.shape}")
    predicted, truth = _binary(predicted, threshold), _binary(truth, threshold)
    scores = []
    for p, t in zip(predicted, truth, strict=True):
        union = np.logical_or(p, t).sum()
        scores.append(1.0 if union == 0 else float(np.logical_and(p, t).sum() / union))
    return float(np.mean(scores))


def _boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of `mask` with a 4-neighbour outside it (the inner edge)."""
    eroded = cv2.erode(mask.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & (eroded == 0)


def boundary_f(predicted: np.ndarray, truth: np.ndarray, threshold: float = 0.5, tolerance: float = 0.008
               ) -> float:
    """F (contour accuracy, as in DAVIS): the mean over frames of the F-measure of boundary precision and recall,
    a boundary pixel matching when the other boundary is within `tolerance` x the frame diagonal (DAVIS: 0.008,
    about 3.5 px at 240x360). Inputs as `mask_iou`; a frame where both masks are empty scores 1."""
    if predicted.shape != truth.shape:
        raise ShapeError(f"boundary_f: shapes differ, {predicted.shape} vs {truth.shape}")
    predicted, truth = _binary(predicted, threshold), _binary(truth, threshold)
    height, width = truth.shape[1:]
    radius = max(1, int(np.ceil(tolerance * np.hypot(height, width))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    scores = []
    for p, t in zip(predicted, truth, strict=True):
        edge_p, edge_t = _boundary(p), _boundary(t)
        if not edge_p.any() and not edge_t.any():
            scores.append(1.0)
            continue
        if not edge_p.any() or not edge_t.any():
            scores.append(0.0)
            continue
        near_t = cv2.dilate(edge_t.astype(np.uint8), disk) > 0
        near_p = cv2.dilate(edge_p.astype(np.uint8), disk) > 0
        precision = float((edge_p & near_t).sum() / edge_p.sum())
        recall = float((edge_t & near_p).sum() / edge_t.sum())
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def masked_psnr(reference: np.ndarray, test: np.ndarray, mask: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over the pixels where `mask` (broadcast over channels) is true; e.g. a restored background
    inside the subject's true hole. (T, H, W, C) images and a (T, H, W) mask; inf when identical there."""
    if reference.shape != test.shape or reference.shape[:mask.ndim] != mask.shape:
        raise ShapeError(f"masked_psnr: shapes differ, {reference.shape}, {test.shape}, mask {mask.shape}")
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ShapeError("masked_psnr: the mask is empty")
    return psnr(reference[mask], test[mask], peak)
