"""Layer transforms: flip, rescale-and-move (resized crop), colour jitter under the matte, placement."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import splitmerge as sm
from splitmerge.video import transforms as tf


def square_layer(frames=4, height=40, width=60, box=(10, 20, 12, 16), colour=(200, 40, 40)):
    """A solid square subject with a 1-px soft border: (fg premultiplied, alpha)."""
    top, left, h, w = box
    alpha = np.zeros((frames, height, width), np.float32)
    alpha[:, top - 1:top + h + 1, left - 1:left + w + 1] = 0.5
    alpha[:, top:top + h, left:left + w] = 1.0
    colours = np.broadcast_to(np.array(colour, np.uint8), (frames, height, width, 3))
    return sm.premultiply(colours, alpha), alpha


def test_hflip_mirrors_and_is_an_involution():
    fg, alpha = square_layer()
    flipped_fg, flipped_alpha = tf.hflip(fg, alpha)
    assert tf.subject_box(flipped_alpha, 0.9) == tf.subject_box(alpha, 0.9).__class__(10, 60 - 20 - 16, 12, 16)
    back_fg, back_alpha = tf.hflip(flipped_fg, flipped_alpha)
    assert np.array_equal(back_fg, fg) and np.array_equal(back_alpha, alpha)


def test_affine_identity_and_integer_shift_are_exact():
    fg, alpha = square_layer()
    same_fg, same_alpha = tf.affine(fg, alpha, 1.0, (0, 0), (0, 0))
    assert np.array_equal(same_fg, fg) and np.array_equal(same_alpha, alpha)
    moved_fg, moved_alpha = tf.affine(fg, alpha, 1.0, (5, -3), (0, 0))
    assert np.array_equal(moved_alpha[:, 7:30, 5:], alpha[:, 10:33, :-5])


def test_affine_scales_about_the_centre():
    fg, alpha = square_layer(box=(10, 20, 12, 16))
    center = tf.box_center(tf.subject_box(alpha, 0.9))
    _, big = tf.affine(fg, alpha, 2.0, (0, 0), center)
    box = tf.subject_box(big, 0.9)
    assert abs(box.height - 24) <= 2 and abs(box.width - 32) <= 2
    assert np.allclose(tf.box_center(box), center, atol=1)
    assert big.sum() == pytest.approx(4 * alpha.sum(), rel=0.05)


def test_kept_fraction_counts_what_leaves_the_frame():
    _, alpha = square_layer(box=(10, 0, 12, 16))
    alpha[:] = 0
    alpha[:, 10:22, 0:16] = 1
    assert tf.kept_fraction(alpha, 1.0, (0, 0), (0, 0)) == 1.0
    assert tf.kept_fraction(alpha, 1.0, (-8, 0), (0, 0)) == pytest.approx(0.5)
    assert tf.kept_fraction(alpha, 1.0, (100, 0), (0, 0)) == 0.0


def test_resized_crop_keeps_the_subject_and_the_scale_range():
    fg, alpha = square_layer(box=(10, 20, 20, 24))
    for seed in range(40):
        params = tf.sample_resized_crop(alpha, np.random.default_rng(seed), (0.5, 2.0), 0.9)
        assert 0.5 <= params["area"] <= 2.0 or params["fallback"] == "identity"
        assert params["scale"] == pytest.approx(params["area"] ** -0.5)
        assert params["kept"] >= 0.9
        _, out = tf.affine(fg, alpha, params["scale"], params["shift"], params["center"])
        kept_mass = out.sum() / (params["scale"] ** 2 * alpha.sum())
        assert kept_mass >= 0.85  # the resampled matte agrees with the analytic count


@pytest.mark.parametrize("area", [0.5, 2.0])
def test_resized_crop_is_a_crop_box_of_the_frame(area):
    """The drawn move is that of a box with the frame's aspect ratio and `area` times its area, inside the frame
    (zoom in) or covering it (zoom out), resized to the frame: x' = zoom (x - corner) - 0.5."""
    _, alpha = square_layer(height=40, width=60, box=(14, 20, 8, 10))
    for seed in range(10):
        params = tf.sample_resized_crop(alpha, np.random.default_rng(seed), (area, area), 0.9)
        zoom, center, shift = params["scale"], np.array(params["center"]), np.array(params["shift"])
        assert zoom == pytest.approx(area ** -0.5) and params["fallback"] == ""
        corner = center - (center + shift + 0.5) / zoom + 0.5   # the box's top-left edge, 0 = the frame's
        spare = np.array([60, 40]) * (1 - 1 / zoom)
        assert np.all(np.minimum(0, spare) - 1e-9 <= corner) and np.all(corner <= np.maximum(0, spare) + 1e-9)


def test_resized_crop_falls_back_when_nothing_fits():
    _, alpha = square_layer(height=40, width=60, box=(1, 1, 38, 58))
    params = tf.sample_resized_crop(alpha, np.random.default_rng(0), (0.5, 0.55), 0.99)
    assert params["fallback"] == "identity" and params["scale"] == 1.0 and params["kept"] == 1.0


def test_color_jitter_changes_only_the_subject():
    fg, alpha = square_layer()
    out, out_alpha = tf.color_jitter(fg, alpha, brightness=1.2, contrast=0.8, saturation=1.3, hue=0.1)
    assert out_alpha is alpha
    assert out[alpha == 0].max() == 0
    assert not np.array_equal(out[alpha == 1], fg[alpha == 1])
    same, _ = tf.color_jitter(fg, alpha)
    assert np.abs(same.astype(int) - fg).max() <= 1


def test_color_jitter_factors_mean_what_they_say():
    fg, alpha = square_layer(colour=(200, 40, 40))
    inside = alpha == 1
    brighter, _ = tf.color_jitter(fg, alpha, brightness=1.2)
    assert brighter[inside].mean(axis=0) == pytest.approx([240, 48, 48], abs=1)
    grey, _ = tf.color_jitter(fg, alpha, saturation=0.0)
    pixel = grey[inside][0].astype(int)
    assert pixel[0] == pixel[1] == pixel[2]
    shifted, _ = tf.color_jitter(fg, alpha, hue=0.5)  # red turned half way round the wheel is cyan
    hue = cv2.cvtColor(shifted[inside][:1][None].astype(np.float32) / 255, cv2.COLOR_RGB2HSV)[0, 0, 0]
    assert hue == pytest.approx(180, abs=2)
    flat, _ = tf.color_jitter(fg, alpha, contrast=0.0)  # one colour: contrast 0 keeps its mean grey
    grey_level = 0.299 * 200 + 0.587 * 40 + 0.114 * 40
    assert flat[inside].mean() == pytest.approx(grey_level, abs=1.5)
    flat_bright, _ = tf.color_jitter(fg, alpha, brightness=1.2, contrast=0.0)  # contrast acts after brightness
    assert flat_bright[inside].mean() == pytest.approx(1.2 * grey_level, abs=1.5)


def test_place_puts_the_anchor_at_the_position_and_scales_to_the_frame():
    fg, alpha = square_layer(height=40, width=60, box=(10, 20, 10, 10))
    out_fg, out_alpha = tf.place(fg, alpha, (80, 120), position=(0.25, 0.75), scale=1.0)
    assert out_fg.shape == (4, 80, 120, 3)
    box = tf.subject_box(out_alpha, 0.9)
    assert np.allclose(tf.box_center(box), (0.25 * 119, 0.75 * 79), atol=1.5)
    assert abs(box.height - 20) <= 2  # frame height doubled, so the subject doubles
    _, half = tf.place(fg, alpha, (80, 120), position=(0.5, 0.5), scale=0.5)
    assert abs(tf.subject_box(half, 0.9).height - 10) <= 2


def test_place_follows_a_trajectory_and_anchors():
    fg, alpha = square_layer(frames=3, height=40, width=60, box=(10, 20, 10, 10))
    # Give the subject its own motion: 4 px right per frame.
    for t in range(3):
        fg[t], alpha[t] = np.roll(fg[t], 4 * t, axis=1), np.roll(alpha[t], 4 * t, axis=1)
    path = np.array([[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]])
    _, pinned = tf.place(fg, alpha, (40, 60), position=path, anchor="frame")
    centers = [tf.box_center(tf.subject_box(pinned[t], 0.9))[0] for t in range(3)]
    assert np.allclose(centers, path[:, 0] * 59, atol=1)
    _, moving = tf.place(fg, alpha, (40, 60), position=(0.5, 0.5), anchor="clip")
    centers = [tf.box_center(tf.subject_box(moving[t], 0.9))[0] for t in range(3)]
    assert np.allclose(np.diff(centers), 4, atol=0.5)  # own motion kept around the placed anchor


def test_augment_is_seeded_and_replayable():
    fg, alpha = square_layer()
    a = tf.augment(fg, alpha, 7)
    b = tf.augment(fg, alpha, np.random.default_rng(7))
    assert a[2] == b[2] and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    replay = tf.apply_params(fg, alpha, a[2])
    assert np.array_equal(replay[0], a[0]) and np.array_equal(replay[1], a[1])
    others = [tf.augment(fg, alpha, seed)[2] for seed in range(8, 14)]
    assert any(p != a[2] for p in others)


def test_augment_probabilities_follow_the_paper_and_switch_off():
    _, alpha = square_layer(frames=1)
    draws = [tf.sample_augmentation(alpha, np.random.default_rng(seed)) for seed in range(600)]
    assert np.mean([d["flip"] for d in draws]) == pytest.approx(0.7, abs=0.06)
    assert np.mean([d["crop"] is not None for d in draws]) == pytest.approx(0.7, abs=0.06)
    assert np.mean([d["jitter"] is not None for d in draws]) == pytest.approx(0.2, abs=0.05)
    off = tf.sample_augmentation(alpha, np.random.default_rng(0), tf.AugmentConfig(enabled=False))
    assert off["flip"] is False and off["crop"] is None and off["jitter"] is None
    no_flip = tf.sample_augmentation(alpha, np.random.default_rng(3), tf.AugmentConfig(flip_p=0.0, crop_p=1.0))
    all_flip = tf.sample_augmentation(alpha, np.random.default_rng(3), tf.AugmentConfig(flip_p=1.0, crop_p=1.0))
    assert no_flip["crop"]["scale"] == all_flip["crop"]["scale"]  # same draws whichever pieces are on


def test_bad_transform_inputs():
    fg, alpha = square_layer()
    with pytest.raises(sm.ShapeError, match="alpha"):
        tf.hflip(fg, alpha[:, :5])
    with pytest.raises(sm.OptionError, match="scale"):
        tf.affine(fg, alpha, 0.0, (0, 0), (0, 0))
    with pytest.raises(sm.OptionError, match="hue"):
        tf.color_jitter(fg, alpha, hue=0.9)
    with pytest.raises(sm.OptionError, match="scale_range"):
        tf.sample_resized_crop(alpha, np.random.default_rng(0), (2.0, 0.5))
