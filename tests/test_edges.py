"""The outline decided against the plate (`decompose.edges`): a fat matte shrinks to the subject's edge, a striped
subject keeps its stripes, the scene seen through a gap leaves the matte only where the plate is trusted, and the
matte's glow over the scene beyond the outline is dropped."""

from __future__ import annotations

import cv2
import numpy as np

from splitmerge.data.cutouts import load_cutout, load_photo
from splitmerge.decompose.edges import clear_glow, plate_alpha

SIZE = (120, 160)


def composite(alpha: np.ndarray, subject: np.ndarray, scene: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32: subject over scene, both (H, W, 3) float32, with alpha (H, W)."""
    return alpha[..., None] * subject + (1 - alpha[..., None]) * scene


def fat(alpha: np.ndarray, px: int) -> np.ndarray:
    """The soft matte a too-wide mask gives: alpha > 0.01 dilated by `px` px, then blurred a little."""
    grown = cv2.dilate((alpha > 0.01).astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8))
    return cv2.GaussianBlur(grown.astype(np.float32), (0, 0), 0.8)


def iou(first: np.ndarray, second: np.ndarray) -> float:
    return float(((first > 0.5) & (second > 0.5)).sum() / ((first > 0.5) | (second > 0.5)).sum())


def real_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real cut-out (the astronaut, soft anti-aliased edge) over a real photo: (alpha, subject, scene)."""
    height, width = SIZE
    scene = cv2.resize(load_photo("coffee"), (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    cutout = load_cutout("astronaut")
    rgb = cv2.resize(cutout.rgb, (80, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    matte = cv2.resize(cutout.alpha.astype(np.float32), (80, 64), interpolation=cv2.INTER_AREA)
    alpha = np.zeros(SIZE, np.float32)
    subject = np.zeros(SIZE + (3,), np.float32)
    alpha[30:94, 40:120], subject[30:94, 40:120] = matte, rgb
    return alpha, subject, scene


def test_a_fat_matte_shrinks_to_the_subject_edge():
    alpha, subject, scene = real_scene()
    frame = composite(alpha, subject, scene)
    too_wide = fat(alpha, 2)
    visible = np.ones(SIZE, bool)
    decided = plate_alpha(frame, scene, too_wide, visible, visible)
    assert iou(too_wide, alpha) < 0.75 and iou(decided, alpha) > 0.88   # measured 0.694 -> 0.918
    soft = (alpha > 0.05) & (alpha < 0.95)
    assert np.abs(decided - alpha)[soft].mean() < 0.9 * np.abs(too_wide - alpha)[soft].mean()   # 0.39 vs 0.49
    # Where the plate never saw the scene, nothing is decided.
    assert np.array_equal(plate_alpha(frame, scene, too_wide, ~visible, ~visible), too_wide)


def test_a_striped_subject_keeps_its_stripes():
    """Each edge pixel finds the stripe it continues: the mean colour of a striped inside would be neither."""
    height, width = SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    alpha = np.clip(30 - np.hypot(xs - 80, ys - 60) + 0.5, 0, 1).astype(np.float32)
    stripes = np.where((xs // 4) % 2 == 0, 230.0, 30.0)
    subject = np.stack([stripes, 200 - 0.5 * stripes, 255 - stripes], axis=-1).astype(np.float32)
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.uniform(0, 255, (height // 8, width // 8, 3)).astype(np.float32), (width, height))
    frame = composite(alpha, subject, scene)
    too_wide = fat(alpha, 2)
    decided = plate_alpha(frame, scene, too_wide, np.ones(SIZE, bool), np.ones(SIZE, bool))
    assert iou(decided, alpha) > 0.95 > iou(too_wide, alpha)


def test_the_scene_seen_through_a_gap_leaves_the_matte_only_where_trusted():
    """A ring whose filled mask covers its hole: the hole shows the plate's scene. Trusted, it leaves the matte;
    untrusted (a slow subject's plate may hold the subject itself), it stays."""
    alpha, subject, scene = real_scene()
    height, width = SIZE
    ys, xs = np.mgrid[0:height, 0:width]
    hole = np.hypot(xs - 80, ys - 62) < 8
    alpha[hole] = 0
    frame = composite(alpha, subject, scene)
    filled = np.clip(alpha + hole, 0, 1).astype(np.float32)
    visible = np.ones(SIZE, bool)
    decided = plate_alpha(frame, scene, filled, visible, visible)
    assert (decided[hole] < 0.5).mean() > 0.95
    kept = plate_alpha(frame, scene, filled, visible, np.zeros(SIZE, bool))
    inner_hole = np.hypot(xs - 80, ys - 62) < 5   # beyond the outline band's reach
    assert (kept[inner_hole] > 0.5).all()


def test_the_glow_over_the_scene_is_dropped_and_nothing_else():
    """A guided-filter-like glow (alpha 0.05-0.45 up to 8 px out) around a real cut-out: where the frame shows the
    scene (times the shadow gain) it goes; the subject, the band along its outline and a glow over something the
    scene does not show (another mover) stay."""
    alpha, subject, scene = real_scene()
    grown = cv2.dilate((alpha > 0.5).astype(np.uint8), np.ones((17, 17), np.uint8)) > 0
    glow = np.where(grown & (alpha < 0.5), 0.25, 0).astype(np.float32)
    matte = np.maximum(alpha, glow)
    frame = composite(alpha, subject, scene)
    frame[:, :44] *= 0.7                                   # a shadow on the left: the scene darkened by its gain
    effects = np.ones(SIZE, np.float32)
    effects[:, :44] = 0.7
    frame[60:70, 120:128] = (255.0, 0.0, 255.0)            # another mover, just right of the subject
    frames = np.clip(np.rint(frame), 0, 255).astype(np.uint8)[None]
    cleared = clear_glow(frames, matte[None], scene.astype(np.uint8)[None], effects[None])[0]
    band = cv2.dilate((alpha > 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))) > 0
    beyond = (glow > 0) & ~band
    mover = np.zeros(SIZE, bool)
    mover[60:70, 120:128] = True
    assert (cleared[beyond & ~mover] == 0).mean() > 0.98   # measured 1.000 (the shadowed left side too)
    assert np.array_equal(cleared[band], matte[band])
    assert (beyond & mover).sum() > 30 and (cleared[beyond & mover] == 0.25).all()
