"""The paper's filters on split clips, each failure with its reason recorded.

A clip is kept for training when a moving subject was found, its foreground ratio (mean of alpha over T*H*W)
lies in [0.01, 0.45], and the subject is present (alpha > 0.5 over at least 0.2% of the frame) in at least 70%
of the frames (the paper: more than 35 of 49).
"""

from __future__ import annotations

import numpy as np

FG_RATIO_RANGE = (0.01, 0.45)
MIN_PRESENCE = 0.7
PRESENT_AREA = 0.002


def present_frames(alpha: np.ndarray) -> np.ndarray:
    """(T,) bool: frames where alpha > 0.5 covers at least `PRESENT_AREA` of the frame. alpha: (T, H, W)."""
    return (alpha > 0.5).mean(axis=(1, 2)) >= PRESENT_AREA


def verdict(found: bool, fg_ratio: float, presence: float) -> dict:
    """{"passed", "reason", "fg_ratio", "presence"}; `reason` names the first filter that failed ("" if none)."""
    low, high = FG_RATIO_RANGE
    if not found:
        reason = "no moving subject"
    elif not low <= fg_ratio <= high:
        reason = f"foreground ratio {fg_ratio:.3f} outside [{low}, {high}]"
    elif presence < MIN_PRESENCE:
        reason = f"subject present in {presence:.0%} of frames (needs {MIN_PRESENCE:.0%})"
    else:
        reason = ""
    return {"passed": reason == "", "reason": reason, "fg_ratio": round(float(fg_ratio), 6),
            "presence": round(float(presence), 4)}
