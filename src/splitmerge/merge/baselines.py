"""The baselines the Composer must beat.

- ``copy-paste``: each subject, as given, alpha-composited over the background.
- ``harmonized-copy-paste``: the same, after moving each subject's colour statistics towards the background
  around it, in CIE Lab (a Reinhard-style transfer, partial by design: a subject keeps its own colours, only the
  lighting shifts). Per frame, lightness mean and spread move `LIGHTNESS_STRENGTH` of the way to those of the
  background ring around the subject (the matte grown by `RING` of the subject's height), and the a/b means move
  `CHROMA_STRENGTH` of the way. Statistics are taken over the whole clip so nothing flickers.
"""

from __future__ import annotations

import cv2
import numpy as np

from .compose import ComposeInputs, Composite, over, register_method

LIGHTNESS_STRENGTH = 0.5
CHROMA_STRENGTH = 0.5
RING = 0.25  # of the subject's height


@register_method("copy-paste")
def copy_paste(inputs: ComposeInputs) -> Composite:
    result = over(inputs)
    result.meta = {"harmonized": False}
    return result


def _lab(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) float RGB in [0, 1] -> Lab (L 0-100)."""
    shape = pixels.shape
    return cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(shape)


def _rgb(lab: np.ndarray) -> np.ndarray:
    shape = lab.shape
    return cv2.cvtColor(lab.reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_Lab2RGB).reshape(shape)


def harmonize(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, dict]:
    """Recolour a placed subject ((T, H, W, 3) uint8 premultiplied, alpha (T, H, W)) towards `background`
    (T, H, W, 3) uint8 around it. Returns the new premultiplied foreground and the statistics used."""
    body = alpha > 0.5
    if not body.any():
        return foreground, {}
    rows = np.nonzero(body.any(axis=(0, 2)))[0]
    grow = max(3, int(RING * (rows.max() - rows.min() + 1)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    ring = np.stack([(cv2.dilate(b.astype(np.uint8), kernel) > 0) & ~(a > 0.01) for b, a in zip(body, alpha,
                                                                                                  strict=True)])
    if not ring.any():
        return foreground, {}
    straight = np.where(alpha[..., None] > 0, foreground / np.maximum(alpha[..., None], 1e-6) / 255.0, 0)
    subject_lab = _lab(np.clip(straight[body], 0, 1))
    ring_lab = _lab(background[ring] / 255.0)
    mean_s, std_s = subject_lab.mean(axis=0), subject_lab.std(axis=0) + 1e-6
    mean_r, std_r = ring_lab.mean(axis=0), ring_lab.std(axis=0) + 1e-6
    target_mean = mean_s.copy()
    target_mean[0] += LIGHTNESS_STRENGTH * (mean_r[0] - mean_s[0])
    target_mean[1:] += CHROMA_STRENGTH * (mean_r[1:] - mean_s[1:])
    target_std = std_s.copy()
    target_std[0] = std_s[0] * (std_r[0] / std_s[0]) ** LIGHTNESS_STRENGTH
    visible = alpha > 0
    lab = _lab(np.clip(straight[visible], 0, 1))
    lab = (lab - mean_s) / std_s * target_std + target_mean
    lab[:, 0] = np.clip(lab[:, 0], 0, 100)
    out = np.zeros(foreground.shape, np.float32)
    out[visible] = np.clip(_rgb(lab), 0, 1) * 255 * alpha[visible][:, None]
    stats = {"subject_lab_mean": mean_s.round(2).tolist(), "ring_lab_mean": mean_r.round(2).tolist(),
             "target_lab_mean": target_mean.round(2).tolist()}
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), stats


@register_method("harmonized-copy-paste")
def harmonized_copy_paste(inputs: ComposeInputs) -> Composite:
    subjects, stats = [], []
    for foreground, alpha in inputs.subjects:
        recoloured, used = harmonize(foreground, alpha, inputs.background)
        subjects.append((recoloured, alpha))
        stats.append(used)
    result = over(inputs, subjects)
    result.meta = {"harmonized": True, "lightness_strength": LIGHTNESS_STRENGTH,
                   "chroma_strength": CHROMA_STRENGTH, "statistics": stats}
    return result
