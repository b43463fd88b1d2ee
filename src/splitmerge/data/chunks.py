"""Cutting a source video into candidate clips, as the paper does: N frames (49), taken directly or after dropping
frames by 2, 3 or 4, never across a scene cut, at most K clips per video, chosen reproducibly by seed.

A clip is a `ClipTask`: a plain, JSON-able recipe (source, first source frame, stride, frame count, size) that
any worker, local or on Ray, turns into the same Layers folder. Its id is a short hash of (source sha1, start,
stride, size, frames), so the same inputs always give the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from ..fileinfo import file_sha1
from ..video.cuts import CutDetector
from ..video.io import VideoReader
from .sources import SourceVideo

CUT_SCAN_SIZE = (72, 128)  # cuts are found on small frames: the colour histograms barely change with size


@dataclass(frozen=True)
class ClipTask:
    """One candidate clip of a source video (or, with ``kind="synthetic"``, one synthetic scene).

    Attributes:
        id: `clip_id` of the fields below.
        kind: "video" or "synthetic".
        source: the video's path ("" for synthetic).
        source_sha1: SHA-1 of the video file ("" for synthetic).
        start: first source frame; the clip reads frames start, start + stride, ... (N of them).
        stride: 1 (every frame) or 2-4 (the paper's frame dropping).
        frames: N.
        height, width: the clip's size (centre crop, then resize).
        caption: the list's caption, or None for the captioner to write one.
        license, url: provenance from the list.
        seed: the synthetic scene's seed (-1 for videos).
    """

    id: str
    kind: str
    source: str
    source_sha1: str
    start: int
    stride: int
    frames: int
    height: int
    width: int
    caption: str | None = None
    license: str | None = None
    url: str | None = None
    seed: int = -1

    def to_dict(self) -> dict:
        return asdict(self)


def clip_id(source_sha1: str, start: int, stride: int, size: tuple[int, int], frames: int) -> str:
    """12 hex digits identifying a clip by what it is made of (DESIGN.md: source sha1, start, stride, size,
    frames)."""
    key = f"{source_sha1}:{start}:{stride}:{size[0]}x{size[1]}:{frames}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def split_of(source_sha1: str, shares: tuple[float, float] = (0.9, 0.05)) -> str:
    """"train", "val" or "test" from a hash of the source video, so no source straddles two splits. `shares`:
    the train and val fractions (test takes the rest)."""
    value = int(hashlib.sha1(f"split:{source_sha1}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if value < shares[0] else "val" if value < shares[0] + shares[1] else "test"


def find_shots(path: str) -> tuple[list[tuple[int, int]], int]:
    """Scene-cut-free shots of a video as [(first frame, end frame)) in source frames, and the frame count."""
    detector = CutDetector()
    starts, count = [0], 0
    for index, frame in enumerate(VideoReader(path, size=CUT_SCAN_SIZE)):
        if detector.is_cut(frame) and index > 0:
            starts.append(index)
        count = index + 1
    ends = starts[1:] + [count]
    return [(a, b) for a, b in zip(starts, ends, strict=True) if b > a], count


def plan_clips(source: SourceVideo, frames: int, size: tuple[int, int], strides: tuple[int, ...],
               max_clips: int, seed: int, sha1: str | None = None) -> list[ClipTask]:
    """The clips to make of one source video.

    One stride is drawn for the video from those of `strides` that some shot can hold (seeded by `seed` and the
    file's hash); every shot is cut
    into back-to-back windows of ``(frames - 1) * stride + 1`` source frames; `max_clips` of all windows are
    drawn (same seeding) and returned in time order. A video with no shot long enough gives no clips.
    """
    sha1 = sha1 or file_sha1(source.path)
    rng = np.random.default_rng([seed, int(sha1[:8], 16)])
    shots, _ = find_shots(source.path)
    longest = max((end - first for first, end in shots), default=0)
    fitting = [s for s in strides if (frames - 1) * s + 1 <= longest]  # a stride no shot can hold is not drawn
    if not fitting:
        return []
    stride = int(rng.choice(fitting))
    span = (frames - 1) * stride + 1
    starts = [start for first, end in shots for start in range(first, end - span + 1, span)]
    if len(starts) > max_clips:
        starts = sorted(rng.choice(starts, size=max_clips, replace=False).tolist())
    return [ClipTask(clip_id(sha1, start, stride, size, frames), "video", str(source.path), sha1, int(start),
                     stride, frames, size[0], size[1], source.caption, source.license, source.url)
            for start in starts]
