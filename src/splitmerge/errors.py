"""Typed errors. Every error the API raises on bad input derives from `SplitMergeError`.

The CLI turns any `SplitMergeError` into one line on stderr and exit code 2, so each message names the file or
option at fault and the problem, on a single line.
"""

from __future__ import annotations


class SplitMergeError(Exception):
    """Base class of every error splitmerge raises on bad input."""


class OptionError(SplitMergeError, ValueError):
    """An argument or option has a value that cannot be used (negative stride, malformed size, ...)."""


class ShapeError(SplitMergeError, ValueError):
    """An in-memory array has the wrong shape, dtype or value range."""


class MediaError(SplitMergeError):
    """A media file cannot be used: unreadable, empty, corrupt, not a video, or has no video stream."""


class MissingFileError(MediaError, FileNotFoundError):
    """A path given as input does not exist."""


class LayersFormatError(SplitMergeError):
    """A Layers folder is malformed: a missing file, a bad layers.json, or files that disagree in shape."""


class UnsafePathError(SplitMergeError, ValueError):
    """A path or name read from a file would lead outside its folder (absolute, ``..``, a symlink out) or is not
    a plain name."""


class BudgetError(SplitMergeError, ValueError):
    """A size or a request would need more memory than the limits allow (docs/robustness.md: how to raise them)."""
