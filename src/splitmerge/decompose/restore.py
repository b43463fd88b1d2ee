"""The default restorer, ``propagate``: removes the subject by filling its hole from the rest of the clip.

The scene behind the subject is assembled on the stabilised canvas from every frame where it is visible
(`plate.clean_plate`, the subject's matte dilated so its soft edge and any halo stay out; where that never
uncovers a pixel, frames where only the matte itself is left out fill it). Canvas pixels that no frame ever saw
uncovered are inpainted spatially once, on the canvas, so every frame receives the same fill and nothing
flickers. Each frame then takes the plate warped into its own view (the camera's motion is kept) inside
the hole, matched to the frame's exposure (measured over the frame around the hole), and keeps its own pixels
everywhere else.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..parallel import frame_map

from .backends import Backend, SplitClip, register
from .plate import clean_plate, close_in_time, exposure_gain

HOLE_DILATION = 5     # px the matte is grown by before it becomes the hole
FEATHER = 2.0         # px (Gaussian sigma) of the blend at the hole's edge
INPAINT_RADIUS = 5    # px, OpenCV Telea inpainting of what no frame saw
HOLE_GAP = 16         # frames: a scene point covered twice this close in time is covered in between
EFFECT_MAX = 0.995    # an effects gain below this is the subject's effect: the background there is the scene


def hole_masks(alpha: np.ndarray, dilation: int = HOLE_DILATION) -> np.ndarray:
    """(T, H, W) bool: where the subject's matte is above zero, grown by `dilation` px."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
    return np.stack([cv2.dilate((a > 0.01).astype(np.uint8), kernel) > 0 for a in alpha])


def blend_weights(hole: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """(H, W) float32: 1 inside the hole, falling smoothly to 0 just outside it (never below 1 inside)."""
    soft = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), feather)
    return np.maximum(soft, hole.astype(np.float32))


@register("restorer")
class PropagateRestorer(Backend):
    """Fill from the frames where the scene is visible (camera-aligned), inpaint only the never-seen rest."""

    name = "propagate"
    description = "camera-aligned clean plate from the whole clip + spatial inpainting of the never-seen (no weights)"

    def __init__(self, dilation: int = HOLE_DILATION, feather: float = FEATHER):
        self.dilation = dilation
        self.feather = feather
        self.info: dict = {}

    def describe_config(self) -> dict:
        return {"name": self.name, "dilation": self.dilation, "feather": self.feather}

    def restore(self, clip: SplitClip, alpha: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 clean plate of `clip` with the subject of matte `alpha` (T, H, W) removed."""
        return self.restore_with_scene(clip, alpha, scene=False)[0]

    def restore_with_scene(self, clip: SplitClip, alpha: np.ndarray, scene: bool = True
                           ) -> tuple[np.ndarray, np.ndarray | None]:
        """(background, scene): `restore`'s result, and with `scene` the plate itself in every frame's view and
        exposure everywhere (not only inside the hole), each (T, H, W, 3) uint8: what the scene looks like
        without the subject, which the matting stage compares the frame with (`decompose.matting`)."""
        started = time.perf_counter()
        frames = clip.frames
        if not (alpha > 0.01).any():
            return frames.copy(), frames.copy() if scene else None
        plate, canvas, hole, never_seen = scene_plate(clip, alpha, self.dilation)
        out = np.empty_like(frames)
        views = np.empty_like(frames) if scene else None
        margin_kernel = np.ones((9, 9), np.uint8)

        def fill(t: int) -> None:
            if views is None and not hole[t].any():
                out[t] = frames[t]
                return
            frame = frames[t].astype(np.float32)
            background = canvas.to_frame(plate, t).astype(np.float32)
            # The clip's exposure may drift: matched over the whole frame around the hole (a ring just around it
            # is easily mostly another mover, which would tint the fill).
            outside = cv2.dilate(hole[t].astype(np.uint8), margin_kernel) == 0
            background *= exposure_gain(frame, background, outside)
            if views is not None:
                views[t] = np.clip(np.rint(background), 0, 255)
            if not hole[t].any():
                out[t] = frames[t]
                return
            weight = blend_weights(hole[t], self.feather)[..., None]
            out[t] = np.clip(np.rint(frame * (1 - weight) + background * weight), 0, 255)

        frame_map(fill, range(len(frames)))
        self.info = {"never_seen_share": never_seen, "seconds": time.perf_counter() - started}
        return out, views


def extend_hole(background: np.ndarray, scene: np.ndarray, coarse: np.ndarray, alpha: np.ndarray,
                effects: np.ndarray | None = None, dilation: int = HOLE_DILATION, feather: float = FEATHER
                ) -> np.ndarray:
    """The restored `background` (T, H, W, 3) uint8, also filled from `scene` where the final matte `alpha`
    (T, H, W) reaches beyond the hole the restorer filled for the matte `coarse` (a limb the matting stage
    found that the segmenter missed) and, given `effects` (T, H, W), where the subject's shadow lies beyond it
    (the background holds no shadow); the restorer's pixels are kept everywhere else."""
    old = hole_masks(coarse, dilation)
    new = hole_masks(alpha, dilation)
    if effects is not None:
        new |= hole_masks((effects < EFFECT_MAX).astype(np.float32), 1)
    out = background.copy()

    def fill(t: int) -> None:
        beyond = new[t] & ~old[t]
        if not beyond.any():
            return
        weight = blend_weights(beyond, feather)[..., None] * (~old[t])[..., None]
        out[t] = np.clip(np.rint(background[t] * (1 - weight) + scene[t] * weight), 0, 255)

    frame_map(fill, range(len(background)))
    return out


def scene_plate(clip: SplitClip, alpha: np.ndarray, dilation: int = HOLE_DILATION
                ) -> tuple[np.ndarray, object, np.ndarray, float]:
    """The scene without the subject of matte `alpha` (T, H, W) on the clip's stabilised canvas: (plate
    (Hc, Wc, 3) uint8, the `Canvas`, the hole (T, H, W) bool: the matte grown by `dilation` px and closed in
    time, and the share of the pixels the hole needed that no frame saw, which were inpainted)."""
    frames = clip.frames
    canvas = clip.canvas
    # A slow subject's matte that misses part of it in a few frames would put those parts into the plate.
    hole = close_in_time(hole_masks(alpha, dilation), canvas, HOLE_GAP)
    plate, seen = clean_plate(frames, hole, canvas, clip.canvas_frames)
    if not seen.all():
        # What the generous hole never uncovered may still have been seen just outside the subject itself:
        # better than inventing it. Only what neither saw is inpainted.
        tight = hole_masks(alpha, 1)
        loose_plate, loose_seen = clean_plate(frames, tight, canvas, clip.canvas_frames, within=~seen)
        fallback = loose_seen & ~seen
        plate[fallback] = loose_plate[fallback]
        seen = seen | loose_seen
    needed = np.zeros(canvas.size, np.uint8)
    for t in range(len(frames)):
        needed |= canvas.from_frame(hole[t].astype(np.uint8), t, cv2.INTER_NEAREST)
    never_seen = (needed > 0) & ~seen
    if never_seen.any():
        # Every unseen canvas pixel goes into the mask, not only the needed ones: inpainting treats what is
        # outside its mask as known, and unseen pixels are black.
        plate = cv2.inpaint(plate, (~seen).astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return plate, canvas, hole, float(never_seen.sum() / max(needed.astype(bool).sum(), 1))
