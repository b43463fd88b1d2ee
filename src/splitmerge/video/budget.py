"""Size and memory limits, checked before any decoding or allocation (docs/robustness.md).

Two limits, each raised by an environment variable:
- ``SPLITMERGE_MAX_PIXELS``: the most pixels a frame may have, in a file read or at a working size (default
  7680 x 4320 = 8K UHD, 33.2 M pixels; a 20000x20000 request is refused at once).
- ``SPLITMERGE_MAX_MEMORY_GB``: the most memory one request may plan to hold (default: half of this machine's
  physical memory), so that a big request fails with a message instead of taking the machine down.
"""

from __future__ import annotations

import os

from ..errors import BudgetError, OptionError

DEFAULT_MAX_PIXELS = 7680 * 4320
PIXELS_VARIABLE = "SPLITMERGE_MAX_PIXELS"
MEMORY_VARIABLE = "SPLITMERGE_MAX_MEMORY_GB"
GIB = 1 << 30


def _from_environment(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{name}={text!r}: expected a positive number") from None
    if not value > 0 or value == float("inf"):
        raise OptionError(f"{name}={text!r}: expected a positive number")
    return value


def max_pixels() -> int:
    """The pixel limit per frame (``SPLITMERGE_MAX_PIXELS`` or 8K UHD)."""
    return int(_from_environment(PIXELS_VARIABLE, DEFAULT_MAX_PIXELS))


def physical_memory() -> int:
    """This machine's physical memory in bytes (16 GiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * GIB


def max_memory() -> int:
    """The memory limit per request in bytes (``SPLITMERGE_MAX_MEMORY_GB`` or half the physical memory)."""
    return int(_from_environment(MEMORY_VARIABLE, physical_memory() / 2 / GIB) * GIB)


def check_frame_size(height: int, width: int, what: str) -> None:
    """Refuse a frame of `height` x `width` pixels above the pixel limit; `what` names the file or option."""
    limit = max_pixels()
    if height * width > limit:
        raise BudgetError(f"{what}: {height}x{width} is {height * width / 1e6:.1f} M pixels a frame, above the "
                          f"limit of {limit / 1e6:.1f} M (raise it with {PIXELS_VARIABLE}=N if this machine "
                          f"has the memory)")


def check_memory(nbytes: float, what: str) -> None:
    """Refuse a request that plans to hold `nbytes` bytes at once, above the memory limit."""
    limit = max_memory()
    if nbytes > limit:
        raise BudgetError(f"{what}: needs about {nbytes / GIB:.1f} GiB at once, above the limit of "
                          f"{limit / GIB:.1f} GiB (use fewer frames or a smaller size, or raise "
                          f"{MEMORY_VARIABLE})")
