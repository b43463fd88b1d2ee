"""Which way a subject should face: the caption's stated direction of motion against the layer's own.

A subject layer may come mirrored (training flips it at p 0.7; a user's layer may have been flipped, or the
prompt may ask for the other direction). Whether it is can be told only from the text against the motion: "a cat
moves to the right" over a cat drifting left means the layer runs the wrong way. The small CPU Composers do not
learn that comparison in their budget (their mirror logit settles on the training prior; docs/training.md), so
``stm`` decides by default with this explicit rule (``mirror="caption"``), and falls back to keeping the
orientation whenever the text or the motion says nothing.

Directions are +1 (right) and -1 (left) in frame coordinates; 0 means unknown.
"""

from __future__ import annotations

import re

import numpy as np

MIN_DRIFT = 0.03   # of the frame width: a smaller net drift of the matte's centre is no direction
_MOTION = re.compile(
    r"\b(?:moves?|moving|walks?|walking|runs?|running|goes|going|rides?|riding|drives?|driving|flies|flying|"
    r"swims?|swimming|crawls?|crawling|rolls?|rolling|heads?|heading|travels?|travelling|traveling|hops?|"
    r"hopping|jumps?|jumping|crosses|crossing)\b[^.;!?]*?\b(?:to(?:wards?)? the (left|right)|(left|right)wards?)\b",
    re.IGNORECASE)


def stated_direction(text: str) -> int:
    """+1 / -1 when `text` says its subject moves to the right / left ("moves slowly to the right", "walking
    leftwards"); 0 when it says neither, or both (several subjects going different ways)."""
    found = {(match.group(1) or match.group(2)).lower() for match in _MOTION.finditer(text or "")}
    if len(found) != 1:
        return 0
    return 1 if found.pop() == "right" else -1


def matte_centres(alpha: np.ndarray) -> np.ndarray:
    """(T,) x of each frame's matte centre of mass, px; NaN where a frame has no subject. `alpha` (T, H, W)."""
    width = alpha.shape[-1]
    mass = alpha.reshape(len(alpha), -1, width).sum(axis=1, dtype=np.float64)  # (T, W) column sums
    totals = mass.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, (mass @ np.arange(width, dtype=np.float64)) / totals, np.nan)


def drift_direction(centres: np.ndarray, width: int, min_drift: float = MIN_DRIFT) -> int:
    """+1 / -1 when the centres (`matte_centres`) drift right / left over the clip by at least `min_drift` of
    `width` (the mean of the last third of frames with a subject against the first third), else 0."""
    present = centres[np.isfinite(centres)]
    if len(present) < 2:
        return 0
    third = max(1, len(present) // 3)
    drift = (present[-third:].mean() - present[:third].mean()) / max(width - 1, 1)
    if abs(drift) < min_drift:
        return 0
    return 1 if drift > 0 else -1


def observed_direction(alpha: np.ndarray, min_drift: float = MIN_DRIFT) -> int:
    """+1 / -1 when the matte (T, H, W) drifts right / left over the clip by at least `min_drift` of the width,
    else 0 (`drift_direction` of its `matte_centres`)."""
    return drift_direction(matte_centres(alpha), alpha.shape[-1], min_drift)


def mirror_for(text: str, centres: np.ndarray, width: int) -> bool:
    """`should_mirror` from the matte's centres (a clip streamed a chunk at a time)."""
    stated, observed = stated_direction(text), drift_direction(centres, width)
    return bool(stated and observed and stated != observed)


def should_mirror(text: str, alpha: np.ndarray) -> bool:
    """Mirror the layer when the text and the matte (T, H, W) both give a direction and they disagree."""
    return mirror_for(text, matte_centres(alpha), alpha.shape[-1])
