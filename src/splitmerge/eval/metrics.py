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


def _subject_lab_pairs(name: str, reference: np.ndarray, reference_mask: np.ndarray, test: np.ndarray,
                       test_mask: np.ndarray, min_pixels: int = 1):
    """Per frame where both masks (T, H, W) bool hold at least `min_pixels`: the CIELAB colours (N, 1, 3) of
    `reference`'s subject and of `test`'s (each (T, H, W, 3) uint8 RGB under its own mask), as a pair; the shapes
    are checked first (`name` says whose check failed)."""
    from skimage.color import rgb2lab

    if reference.shape != test.shape or not reference_mask.shape == test_mask.shape == reference.shape[:-1]:
        raise ShapeError(f"{name}: shapes disagree: {reference.shape}, {test.shape}, {reference_mask.shape}, "
                         f"{test_mask.shape}")
    for frame in range(len(reference)):
        if min(reference_mask[frame].sum(), test_mask[frame].sum()) >= min_pixels:
            yield tuple(rgb2lab(clip[frame][mask[frame]].reshape(-1, 1, 3))
                        for clip, mask in ((reference, reference_mask), (test, test_mask)))


def light_error(reference: np.ndarray, reference_mask: np.ndarray, test: np.ndarray, test_mask: np.ndarray
                ) -> float | None:
    """CIEDE2000 between the mean CIELAB colour of `reference` (T, H, W, 3) uint8 RGB under `reference_mask`
    (T, H, W) bool and that of `test` under `test_mask`, frame by frame, averaged over the frames where both
    masks hold pixels (None when none does). It scores a subject's light and tint wherever each clip has it:
    where it landed and how much contrast it kept do not enter, so a subject whose contrast is shrunk does not
    score better for it (as `colour_error` over the overlap of two misplaced mattes rewards it)."""
    from skimage.color import deltaE_ciede2000

    means = [[lab.mean(axis=(0, 1)) for lab in pair]
             for pair in _subject_lab_pairs("light_error", reference, reference_mask, test, test_mask)]
    if not means:
        return None
    pairs = np.asarray(means)  # (frames, 2, 3)
    return float(deltaE_ciede2000(pairs[:, 0], pairs[:, 1]).mean())


CONTRAST_FLOOR = 1.0      # L* units: a flat subject's spread counts as this much
CONTRAST_MIN_PIXELS = 8   # a frame's subject with fewer solid pixels says nothing about its contrast


def contrast_error(reference: np.ndarray, reference_mask: np.ndarray, test: np.ndarray, test_mask: np.ndarray
                   ) -> float | None:
    """|ln| of the ratio of the subject's lightness contrast (the standard deviation of CIELAB L* over its
    pixels) in `test` (T, H, W, 3) uint8 RGB under `test_mask` (T, H, W) bool to the contrast in `reference` under
    `reference_mask`, frame by frame, averaged over the frames where both masks hold `CONTRAST_MIN_PIXELS` (None
    when none does). Wherever each subject is: a subject washed out to half its contrast scores ln 2 = 0.69 however
    well its mean colour matches (which `light_error` scores) and however `colour_error` over a misplaced overlap
    rewards it; a sharper or flatter pattern alike. 0 for the subject's own pixels moved anywhere."""
    ratios = []
    for pair in _subject_lab_pairs("contrast_error", reference, reference_mask, test, test_mask,
                                   CONTRAST_MIN_PIXELS):
        spread, test_spread = (max(float(lab[..., 0].std()), CONTRAST_FLOOR) for lab in pair)
        ratios.append(abs(math.log(test_spread / spread)))
    return float(np.mean(ratios)) if ratios else None


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
    from ..decompose.camera import dis_flow, to_gray

    source = video if flow_source is None else flow_source
    if source.shape != video.shape:
        raise ShapeError(f"warping_error: shapes differ, {video.shape} vs {source.shape}")
    gray = to_gray(source)
    height, width = gray.shape[1:]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    errors = []
    for t in range(len(video) - 1):
        backward = dis_flow(gray[t + 1], gray[t])   # for each pixel of t+1, where it was in t
        forward = dis_flow(gray[t], gray[t + 1])
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


# Hard-case split metrics (issue 17): shadows, soft edges, flicker, plate and effects.

SOFT_EPSILON = 1e-3  # a true matte value is "soft" strictly between this and 1 - this


def _check_mattes(name: str, *arrays) -> None:
    shapes = [np.shape(array) for array in arrays if array is not None]
    if len(shapes[0]) != 3 or any(shape != shapes[0] for shape in shapes):
        raise ShapeError(f"{name}: expected equally shaped (T, H, W) arrays, got {shapes}")


def shadow_region(alpha_true: np.ndarray, gain_true: np.ndarray, gain_below: float = 0.9,
                  alpha_below: float = 0.1) -> np.ndarray:
    """(T, H, W) bool: the visible true shadow, pixels darkened to a gain below `gain_below` where the subject's
    true matte is below `alpha_below`. Inputs (T, H, W) in [0, 1] (gain: 1 = untouched)."""
    _check_mattes("shadow_region", alpha_true, gain_true)
    return (np.asarray(gain_true) < gain_below) & (np.asarray(alpha_true) < alpha_below)


def shadow_leak(alpha_est: np.ndarray, alpha_true: np.ndarray, gain_true: np.ndarray, threshold: float = 0.5
                ) -> float:
    """Share (0..1) of the true shadow pixels (`shadow_region`: gain < 0.9 and true alpha < 0.1) that the
    estimated matte covers (alpha_est > `threshold`): 0 = the shadow stays out of the subject, 1 = all of it is
    cut out with it. All inputs (T, H, W) in [0, 1]; NaN when the clip has no shadow pixels."""
    _check_mattes("shadow_leak", alpha_est, alpha_true, gain_true)
    region = shadow_region(alpha_true, gain_true)
    if not region.any():
        return math.nan
    return float((np.asarray(alpha_est)[region] > threshold).mean())


def soft_region(alpha_true: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: where the true matte is soft, strictly between 0 and 1 (by `SOFT_EPSILON`)."""
    alpha_true = np.asarray(alpha_true)
    return (alpha_true > SOFT_EPSILON) & (alpha_true < 1 - SOFT_EPSILON)


def soft_edge_sad(alpha_est: np.ndarray, alpha_true: np.ndarray) -> float:
    """Alpha SAD on soft edges: per frame, the sum of |alpha_est - alpha_true| (alpha units, i.e. pixels of full
    opacity) over the pixels where the true matte is soft (`soft_region`), then the mean over frames that have
    any. Inputs (T, H, W) in [0, 1]; NaN when no frame has a soft pixel. Lower is better; 0 = exact."""
    _check_mattes("soft_edge_sad", alpha_est, alpha_true)
    region = soft_region(alpha_true)
    sums = [float(np.abs(e[r].astype(np.float64) - t[r]).sum())
            for e, t, r in zip(alpha_est, alpha_true, region, strict=True) if r.any()]
    return float(np.mean(sums)) if sums else math.nan


def matte_debris(alpha_est: np.ndarray, alpha_true: np.ndarray, margin: float = 2.0) -> float:
    """What a matte carries of the source scene: per frame, the estimated matte's mass (sum of alpha) farther
    than `margin` px outside the true matte (true alpha < 0.01 there), over the true matte's mass; the mean
    over the frames with a subject. A faint glow of the old scene around the subject, which J (alpha > 0.5)
    and the soft-edge errors (true soft pixels only) do not see, counts here as do whole pieces of scenery.
    Inputs (T, H, W) in [0, 1]; NaN when no frame has a subject. 0 = nothing outside."""
    _check_mattes("matte_debris", alpha_est, alpha_true)
    shares = []
    for estimate, truth in zip(alpha_est, alpha_true, strict=True):
        mass = float(np.asarray(truth, np.float64).sum())
        if mass <= 0:
            continue
        outside = cv2.distanceTransform((np.asarray(truth) < 0.01).astype(np.uint8), cv2.DIST_L2, 3) > margin
        shares.append(float(np.asarray(estimate, np.float64)[outside].sum()) / mass)
    return float(np.mean(shares)) if shares else math.nan


def matte_see_through(alpha_est: np.ndarray, alpha_true: np.ndarray, opaque: float = 0.99) -> float:
    """How much of the old scene shows through the subject: 1 - the mean estimated alpha over the pixels where
    the true matte is opaque (>= `opaque`), all frames together. A matte with holes or a too-soft inside (0.8 where
    the subject is solid) scores here; J (alpha > 0.5) does not see an inside at 0.8. Inputs (T, H, W) in [0, 1];
    NaN when the truth has no opaque pixel. 0 = solid everywhere the subject is."""
    _check_mattes("matte_see_through", alpha_est, alpha_true)
    solid = np.asarray(alpha_true) >= opaque
    if not solid.any():
        return math.nan
    return float(1.0 - np.asarray(alpha_est, np.float64)[solid].mean())


def soft_edge_mae(alpha_est: np.ndarray, alpha_true: np.ndarray) -> float:
    """Mean |alpha_est - alpha_true| (alpha units, 0..1) over all soft true-matte pixels of the clip
    (`soft_region`); (T, H, W) inputs; NaN without soft pixels. A hard 0/1 matte scores about 0.25-0.5 there."""
    _check_mattes("soft_edge_mae", alpha_est, alpha_true)
    region = soft_region(alpha_true)
    if not region.any():
        return math.nan
    return float(np.abs(np.asarray(alpha_est, np.float64)[region] - np.asarray(alpha_true, np.float64)[region])
                 .mean())


def _gradient_magnitude(frame: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    gauss = np.exp(-x * x / (2 * sigma * sigma))
    gauss /= gauss.sum()
    derivative = -x / (sigma * sigma) * gauss
    frame = frame.astype(np.float64)
    gx = cv2.sepFilter2D(frame, cv2.CV_64F, derivative, gauss, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(frame, cv2.CV_64F, gauss, derivative, borderType=cv2.BORDER_REPLICATE)
    return np.hypot(gx, gy)


def soft_edge_gradient_error(alpha_est: np.ndarray, alpha_true: np.ndarray, sigma: float = 1.4) -> float:
    """Gradient error on soft edges (after Rhemann et al. 2009): the mean over soft true-matte pixels
    (`soft_region`) of (|grad alpha_est| - |grad alpha_true|)^2, gradients by first-order Gaussian derivatives
    of `sigma` px, in (alpha per px)^2 x 1000. (T, H, W) inputs; NaN without soft pixels; 0 = exact. A hard
    matte over a soft edge scores higher, its edge being too steep."""
    _check_mattes("soft_edge_gradient_error", alpha_est, alpha_true)
    region = soft_region(alpha_true)
    if not region.any():
        return math.nan
    total, count = 0.0, 0
    for e, t, r in zip(alpha_est, alpha_true, region, strict=True):
        if r.any():
            difference = _gradient_magnitude(e, sigma)[r] - _gradient_magnitude(t, sigma)[r]
            total += float(np.square(difference).sum())
            count += int(r.sum())
    return 1000.0 * total / count


def matte_flicker(alpha_est: np.ndarray, alpha_true: np.ndarray) -> float:
    """Temporal flicker of an estimated matte against the truth: the mean over frame pairs and pixels of
    |(alpha_est[t] - alpha_est[t-1]) - (alpha_true[t] - alpha_true[t-1])|, alpha units per frame (0..1; shown
    x 1000 by the benchmark). 0 when the estimate changes exactly as the truth does (even if it is off by a
    constant); a matte that jitters where the truth holds still, or lags the truth, scores above 0.
    (T, H, W) inputs, T >= 2."""
    _check_mattes("matte_flicker", alpha_est, alpha_true)
    if len(alpha_est) < 2:
        raise ShapeError("matte_flicker: needs at least 2 frames")
    total = 0.0
    for t in range(1, len(alpha_est)):
        change_est = alpha_est[t].astype(np.float64) - alpha_est[t - 1]
        change_true = alpha_true[t].astype(np.float64) - alpha_true[t - 1]
        total += float(np.abs(change_est - change_true).mean())
    return total / (len(alpha_est) - 1)


def plate_psnr(plate_true: np.ndarray, plate_est: np.ndarray, alpha_true: np.ndarray,
               gain_true: np.ndarray | None = None, alpha_above: float = 0.01, gain_below: float = 0.99) -> float:
    """PSNR in dB of an estimated clean plate (T, H, W, 3) uint8 against the true one over the subject and its
    shadow: the pixels where the true matte (T, H, W) is above `alpha_above` or the true gain (T, H, W; None =
    no shadow) is below `gain_below`. The plate has no subject and no shadow, so a plate that keeps the shadow
    loses here. inf when identical there."""
    region = np.asarray(alpha_true) > alpha_above
    if gain_true is not None:
        _check_mattes("plate_psnr", alpha_true, gain_true)
        region |= np.asarray(gain_true) < gain_below
    return masked_psnr(plate_true, plate_est, region)


def effects_psnr(gain_true: np.ndarray, gain_est: np.ndarray | None, alpha_true: np.ndarray | None = None,
                 gain_below: float = 0.99, alpha_below: float = 0.1) -> float:
    """PSNR in dB of an estimated effects (shadow gain) layer against the true gain, both (T, H, W) in [0, 1]
    (1 = untouched) and scaled x 255, over where the true shadow is: gain below `gain_below` and, given the true
    matte, the subject's matte below `alpha_below` (behind the subject the gain is not visible). `gain_est` None
    (a method without effects) counts as 1 everywhere. NaN when the clip has no shadow; inf when exact there."""
    if gain_est is None:
        gain_est = np.ones_like(gain_true, dtype=np.float32)
    _check_mattes("effects_psnr", gain_true, gain_est, alpha_true)
    region = np.asarray(gain_true) < gain_below
    if alpha_true is not None:
        region &= np.asarray(alpha_true) < alpha_below
    if not region.any():
        return math.nan
    return psnr(255.0 * np.asarray(gain_true, np.float64)[region], 255.0 * np.asarray(gain_est, np.float64)[region])
