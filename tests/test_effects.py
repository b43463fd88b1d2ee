"""Effects apart from the subject (`decompose.effects`): a cast shadow leaves the matte and becomes a gain."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from splitmerge.data.cutouts import load_cutout, load_photo
from splitmerge.decompose.effects import separate_effects

SIZE = (120, 180)


def shadow_scene(frames: int = 4, darkness: float = 0.45, seed: int = 0):
    """A real cut-out over a real photo, casting a soft shadow sheared onto the ground at its right.

    Returns (frames (T, H, W, 3) uint8, segmentation (T, H, W): subject and shadow together, as a motion segmenter
    sees them, true alpha (T, H, W), true gain (T, H, W), plate (T, H, W, 3) uint8)."""
    height, width = SIZE
    rng = np.random.default_rng(seed)
    plate = cv2.resize(load_photo("coffee"), (width, height), interpolation=cv2.INTER_AREA)
    cutout = load_cutout("astronaut")
    rgb = cv2.resize(cutout.rgb, (50, 40), interpolation=cv2.INTER_AREA).astype(np.float32)
    matte = cv2.resize(cutout.alpha.astype(np.float32), (50, 40), interpolation=cv2.INTER_AREA)
    clip, segmentation, alphas, gains = [], [], [], []
    for t in range(frames):
        top, left = 30, 30 + 8 * t
        alpha = np.zeros(SIZE, np.float32)
        alpha[top:top + 40, left:left + 50] = matte
        foreground = np.zeros((*SIZE, 3), np.float32)
        foreground[top:top + 40, left:left + 50] = rgb * matte[..., None]
        feet = top + 40
        onto_ground = np.float32([[1, -0.9, 0.9 * feet], [0, 0.4, 0.6 * feet]])  # fall right, squashed
        cast = cv2.GaussianBlur(cv2.warpAffine(alpha, onto_ground, (width, height)), (0, 0), 2.0)
        gain = 1 - darkness * np.clip(cast, 0, 1)
        frame = foreground + (1 - alpha[..., None]) * gain[..., None] * plate
        clip.append(np.clip(np.rint(frame + rng.normal(0, 1.5, frame.shape)), 0, 255).astype(np.uint8))
        segmentation.append(((alpha > 0.05) | (gain < 0.97)).astype(np.float32))
        alphas.append(alpha)
        gains.append(gain.astype(np.float32))
    return (np.stack(clip), np.stack(segmentation), np.stack(alphas), np.stack(gains),
            np.repeat(plate[None], frames, axis=0))


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    mse = np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-12)))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cast_shadow_leaves_the_matte_and_becomes_the_effects(seed):
    frames, segmentation, alpha, gain, plate = shadow_scene(seed=seed)
    shadow = (gain < 0.9) & (alpha < 0.1)
    subject = alpha > 0.5
    matte, effects = separate_effects(frames, segmentation, plate)
    assert (segmentation[shadow] > 0.5).mean() == 1.0  # the segmentation took the whole shadow in
    leak = (matte[shadow] > 0.5).mean()
    kept = (matte[subject] > 0.5).mean()
    error = np.abs(effects - gain)[shadow].mean()
    rebuilt = frames * matte[..., None] + (1 - matte[..., None]) * effects[..., None] * plate
    # Measured over seeds 0-4 (2026-11-30): leak 0.21-0.22, subject kept 0.997-1.000, gain error 0.067-0.070,
    # rebuilt 43.4-43.6 dB; the bounds leave a margin for other CPUs.
    assert leak <= 0.3, leak
    assert kept >= 0.97, kept
    assert error <= 0.09, error
    assert psnr(rebuilt, frames) >= 38
    assert np.all((effects > 0) & (effects <= 1)) and np.all(effects[~(segmentation > 0)] == 1)


def test_no_shadow_keeps_the_matte_and_no_effects():
    frames, _, alpha, _, plate = shadow_scene(darkness=0.0)
    segmentation = (alpha > 0.05).astype(np.float32)
    matte, effects = separate_effects(frames, segmentation, plate)
    assert (matte[alpha > 0.5] > 0.5).mean() >= 0.97
    assert (effects < 0.95).mean() < 0.002


@pytest.mark.parametrize("seed", [0, 1])
def test_given_the_scene_the_shadow_beside_the_matte_joins_the_effects(seed):
    """A segmentation that took only the shadow's near half in: the rest, outside the matte, is found against
    the scene (the plate in every frame's view); without the scene it stays out of the effects."""
    frames, _, alpha, gain, plate = shadow_scene(seed=seed)
    shadow = (gain < 0.9) & (alpha < 0.1)
    near = np.stack([cv2.dilate((a > 0.05).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0 for a in alpha])
    segmentation = ((alpha > 0.05) | ((gain < 0.97) & near)).astype(np.float32)
    beside = shadow & ~(segmentation > 0)
    assert beside.sum() > 200   # a good part of the shadow lies outside the segmentation
    _, alone = separate_effects(frames, segmentation, plate)
    matte, effects = separate_effects(frames, segmentation, plate, scene=plate)
    found_alone, found = (alone[beside] < 0.95).mean(), (effects[beside] < 0.95).mean()
    # Measured over seeds 0-4 (2026-11-30): found without the scene 0.00, with it 0.82-0.96; gain error there
    # 0.026-0.043 against 0.157 without.
    assert found_alone == 0.0
    assert found >= 0.5, found
    assert np.abs(effects - gain)[beside].mean() < np.abs(alone - gain)[beside].mean() / 2
    assert (matte[alpha > 0.5] > 0.5).mean() >= 0.97
    no_shadow = shadow_scene(darkness=0.0, seed=seed)
    _, clean = separate_effects(no_shadow[0], (no_shadow[2] > 0.05).astype(np.float32), plate, scene=plate)
    assert (clean < 0.95).mean() < 0.002   # no shadow, no effects, even looking beside the matte
