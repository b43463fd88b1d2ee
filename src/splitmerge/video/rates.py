"""Frame rates as exact fractions.

Containers store rates as rationals (NTSC video is 30000/1001, not 29.97). A float given by a user is made
rational here, in one place: rates within 0.01 fps of an NTSC rate (N * 1000/1001) snap to it, others take the
nearest fraction with a denominator up to 1001.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ..errors import OptionError

_NTSC_BASES = (24, 30, 48, 60, 120, 240)


def frame_rate(fps: float | int | Fraction | str) -> Fraction:
    """A positive frame rate as an exact `Fraction`; accepts numbers and ``"num/den"`` strings."""
    try:
        rate = Fraction(fps) if isinstance(fps, (str, Fraction, int)) else None
        if rate is None:
            value = float(fps)
            if not math.isfinite(value):
                raise ValueError
            for base in _NTSC_BASES:
                if abs(value - base * 1000 / 1001) < 0.01:
                    return Fraction(base * 1000, 1001)
            rate = Fraction(value).limit_denominator(1001)
    except (TypeError, ValueError, ZeroDivisionError):
        raise OptionError(f"fps {fps!r}: not a frame rate") from None
    if rate <= 0:
        raise OptionError(f"fps {fps!r}: must be positive")
    return rate
