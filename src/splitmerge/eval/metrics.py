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


def ssim(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """Mean structural similarity (Wang et al. 2004: 11-tap Gaussian window, sigma 1.5, K = 0.01, 0.03) over
    frames and channels of two (T, H, W, C) or (H, W, C) images; 1 when identical."""
    if reference.shape != test.shape:
        raise ShapeError(f"ssim: shapes differ, {reference.shape} vs {test.shape}")
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    frames_a = reference.reshape(-1, *reference.shape[-3:]) if reference.ndim == 4 else reference[None]
    frames_b = test.reshape(frames_a.shape)
    scores = []
    for a, b in zip(frames_a, frames_b, strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)

        def blur(image):
            return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
        cov = blur(a * b) - mu_a * mu_b
        index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        scores.append(float(index[5:-5, 5:-5].mean()) if min(a.shape[:2]) > 10 else float(index.mean()))
    return float(np.mean(scores))


def masked_mse(reference: np.ndarray, test: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error (8-bit levels squared) over the pixels where `mask` (T, H, W) is true: fMSE with the
    true matte as the mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ShapeError("masked_mse: the mask is empty")
    return float(np.square(reference[mask].astype(np.float64) - test[mask].astype(np.float64)).mean())


def colour_error(reference: np.ndarray, test: np.ndarray, mask: np.ndarray, samples: int = 200_000) -> float:
    """Mean CIEDE2000 colour difference between two (T, H, W, 3) uint8 RGB clips over the pixels where `mask`
    is true (at most `samples` of them, evenly spaced). 0 when identical; about 2.3 is a just-noticeable
    difference."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ShapeError("colour_error: the mask is empty")
    a, b = reference[mask], test[mask]
    step = max(1, len(a) // samples)
    a, b = a[::step].reshape(-1, 1, 3), b[::step].reshape(-1, 1, 3)
    return float(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean())


DEPTH_SCALE_CAP = math.log(4)  # a frame with no subject, or feet above the horizon, counts as a factor of 4


def depth_scale_error(alpha: np.ndarray, horizon: float, height_per_depth: float) -> float:
    """How far a placed subject's size is from the size the ground implies where its feet are, in a scene whose
    subjects stand on a flat ground (the synthetic scenes: height = `height_per_depth` * (feet y - `horizon`)).

    Per frame of `alpha` (T, H, W): the box of alpha > 0.5 gives the feet (its bottom edge) and the height; the
    error is |ln(height / expected height)|, capped at ln 4 (also for a frame without subject or with the feet
    at or above the horizon). Returns the mean over frames: 0 for a subject whose size fits its depth, whatever
    its x; ln 2 = 0.69 for one twice or half as big as it should be. It scores plausibility, not the one true
    place, so it can tell a model that puts a subject back on the ground at the right size from one that does
    not, where the true x is anyone's guess (a flipped input)."""
    if alpha.ndim != 3:
        raise ShapeError(f"depth_scale_error: expected a (T, H, W) matte, got {alpha.shape}")
    errors = []
    for frame in alpha > 0.5:
        rows = np.flatnonzero(frame.any(axis=1))
        if len(rows) == 0:
            errors.append(DEPTH_SCALE_CAP)
            continue
        feet, height = rows[-1] + 0.5, rows[-1] - rows[0] + 1
        expected = height_per_depth * (feet - horizon)
        errors.append(DEPTH_SCALE_CAP if expected < 1 else min(DEPTH_SCALE_CAP, abs(math.log(height / expected))))
    return float(np.mean(errors))


def warping_error(video: np.ndarray, flow_source: np.ndarray | None = None) -> float:
    """Temporal warping error (Lai et al. 2018) of a (T, H, W, 3) uint8 clip, x 1000: the mean over frame pairs
    of the squared difference (colours in [0, 1]) between frame t+1 and frame t warped to it by optical flow,
    over pixels the flow's forward-backward check calls visible. The flow comes from `flow_source` (the true
    clip, when there is one) or from `video` itself. Lower is steadier."""
    from ..decompose.camera import dis_flow, flow_engine, to_gray

    source = video if flow_source is None else flow_source
    if source.shape != video.shape:
        raise ShapeError(f"warping_error: shapes differ, {video.shape} vs {source.shape}")
    gray = to_gray(source)
    height, width = gray.shape[1:]
    engine = flow_engine(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    errors = []
    for t in range(len(video) - 1):
        backward = dis_flow(gray[t + 1], gray[t], engine)   # for each pixel of t+1, where it was in t
        forward = dis_flow(gray[t], gray[t + 1], engine)
        map_x, map_y = xs + backward[..., 0], ys + backward[..., 1]
        warped = cv2.remap(video[t].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        round_trip = backward + cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        visible = (np.square(round_trip).sum(axis=-1) < 0.01 * (np.square(backward).sum(axis=-1)
                                                                + np.square(forward).sum(axis=-1)) + 0.5)
        visible &= (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        if visible.any():
            difference = (video[t + 1].astype(np.float32) - warped) / 255.0
            errors.append(float(np.square(difference[visible]).sum(axis=-1).mean()))
    return 1000.0 * float(np.mean(errors)) if errors else 0.0
