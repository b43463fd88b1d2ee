"""What passes in front of a placed subject: the background's own movers that stand nearer the camera.

``occlusion="auto"`` (docs/cli.md, "Moving shots"): the background is split with every mover kept
(`decompose.pipeline`, ``all_objects``, at most `SPLIT_HEIGHT` px high), and in each frame every mover (a connected
piece of that matte) that overlaps a placed subject and whose lowest point is lower in the frame than the
subject's by `FEET_MARGIN` of the frame's height (its feet nearer the camera, where the ground is seen; the margin
leaves movers at about the subject's depth behind it) passes in front of it: there the background's own pixels
are kept. A user's matte (``occluder=``, a matte video) is taken as in front wherever it is. ``off``: the
subjects are drawn over everything.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import MediaError, OptionError
from ..video.geometry import capped_size, resize_frames
from ..video.io import VideoReader, iter_chunks, probe

OCCLUSIONS = ("auto", "off")
SPLIT_HEIGHT = 240      # px: the background is split for its movers at most this high
FEET_MARGIN = 0.05      # of the frame height: a mover's lowest point must be this much lower than the subject's
TOUCH_PX = 2            # px a mover's piece and a subject's matte are grown by before asking whether they meet


def check_occlusion(occlusion: str) -> None:
    if occlusion not in OCCLUSIONS:
        raise OptionError(f"occlusion {occlusion!r}: expected one of {', '.join(OCCLUSIONS)}")


def at_size(mattes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, H, W) float32 mattes at `size` (H, W): as they are when they already are, else resized within [0, 1]."""
    return mattes if mattes.shape[1:] == size else np.clip(resize_frames(mattes, size), 0, 1)


def subjects_for_order(result_alpha: np.ndarray | None, placed_alphas: list[np.ndarray]) -> list[np.ndarray]:
    """Each subject's matte where the result put it, for `in_front`'s order: the result's own matte for one
    subject (a Composer may have moved it), else the placed mattes (a union cannot tell subjects apart)."""
    if len(placed_alphas) == 1 and result_alpha is not None:
        return [result_alpha]
    return list(placed_alphas)


def occluder_chunks(path, size: tuple[int, int], count: int, chunk: int) -> Iterator[np.ndarray]:
    """A user's occluder matte video (gray, 0..1 by its bit depth) as (n, H, W) float32 chunks at `size`; a
    file with fewer than `count` frames is a one-line error naming it."""
    info = probe(path)
    if info.frames is not None and info.frames < count:
        raise MediaError(f"{path}: the occluder matte has {info.frames} frames; the composition needs {count}")
    reader = VideoReader(path, max_frames=count, pixels="gray")
    peak = np.float32(65535 if reader.info.pix_fmt.startswith("gray16") else 255)
    given = 0
    for planes in iter_chunks(iter(reader), chunk):
        mattes = planes.astype(np.float32) / peak
        given += len(mattes)
        yield at_size(mattes, size)
    if given < count:
        raise MediaError(f"{path}: the occluder matte ends after {given} frames; the composition needs {count}")


def _split_options(height: int, width: int, count: int) -> dict:
    """`split` options that find every mover of a background of (height, width) in its first `count` frames,
    cheaply (at most `SPLIT_HEIGHT` px high, a median plate, no caption, no effects)."""
    return {"all_objects": True, "frames": count, "size": capped_size(height, width, SPLIT_HEIGHT),
            "restorer": "median", "caption": "", "effects": False}


def movers_in_memory(video, count: int) -> np.ndarray | None:
    """(count, H, W) float32: the movers of a `Video` held in memory, at its size; None when nothing moves."""
    from ..decompose.pipeline import MIN_FRAMES, NoSubjectError, split

    height, width = video.frames.shape[1:3]
    if count < MIN_FRAMES:
        return None   # too short to tell what moves
    try:
        layers = split(video, **_split_options(height, width, count))
    except (NoSubjectError, MediaError):
        return None   # nothing moves (or too short to tell): nothing passes in front
    # quantised as the streamed path's matte file stores it (8 bits), so both paths put the same pixels in front
    alpha = (np.rint(layers.alpha[:count] * 255) / 255).astype(np.float32)
    return at_size(alpha, (height, width))


class BackgroundMovers:
    """The movers of a background video file, split once into a temporary Layers folder inside `where` and read
    back a chunk of mattes at a time at the background's size; none when nothing moves. `close` removes the
    folder."""

    def __init__(self, background, count: int, where: Path):
        from ..decompose.pipeline import MIN_FRAMES, NoSubjectError, split_to_folder
        from ..video.layers import LayersStream

        self._stream = self._folder = None
        if count < MIN_FRAMES:
            return   # too short to tell what moves
        info = probe(background)
        self._folder = Path(tempfile.mkdtemp(prefix=".splitmerge-movers-", dir=where))
        try:
            split_to_folder(background, self._folder / "movers", **_split_options(info.height, info.width, count))
            self._stream = LayersStream(self._folder / "movers")
        except (NoSubjectError, MediaError):
            return   # nothing moves: nothing passes in front
        except BaseException:
            self.close()
            raise

    def chunks(self, size: tuple[int, int], count: int, chunk: int) -> Iterator[np.ndarray | None]:
        """(n, H, W) float32 mover mattes at `size`, or None per chunk when there are none."""
        if self._stream is None:
            for _ in range(0, count, chunk):
                yield None
            return
        for _, alpha in self._stream.chunks(count, chunk, colour=False):
            yield at_size(alpha, size)

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def in_front(movers: np.ndarray, subjects: list[np.ndarray]) -> np.ndarray:
    """(n, H, W) float32: the parts of the movers' mattes `movers` (n, H, W) that pass in front of the subjects
    (`subjects`: each one's placed matte, (n, H, W)): each connected piece of a mover that meets a subject (both
    grown by `TOUCH_PX`) and reaches lower in the frame, by `FEET_MARGIN` of the frame's height, than every
    subject it meets does (the lowest point of the subject's whole matte in that frame: its feet)."""
    height = movers.shape[1]
    kernel = np.ones((2 * TOUCH_PX + 1, 2 * TOUCH_PX + 1), np.uint8)
    front = np.zeros(movers.shape, np.float32)
    for t in range(len(movers)):
        solid = [(alpha[t] > 0.5) for alpha in subjects]
        present = [mask for mask in solid if mask.any()]
        if not present or not (movers[t] > 0.5).any():
            continue
        grown = [cv2.dilate(mask.astype(np.uint8), kernel) > 0 for mask in present]
        feet = [int(np.flatnonzero(mask.any(axis=1))[-1]) for mask in present]
        count, pieces, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate((movers[t] > 0.5).astype(np.uint8),
                                                                              kernel))
        for piece in range(1, count):
            where = pieces == piece
            met = [foot for foot, near in zip(feet, grown, strict=True) if (where & near).any()]
            lowest = stats[piece, cv2.CC_STAT_TOP] + stats[piece, cv2.CC_STAT_HEIGHT] - 1
            if met and lowest > max(met) + FEET_MARGIN * height:
                front[t][where] = movers[t][where]
    return front


def occlude(frames: np.ndarray, alpha: np.ndarray | None, background: np.ndarray, effects: np.ndarray | None,
            occluders: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Put the background's own pixels back over a result wherever `occluders` (n, H, W) pass in front:
    frames (n, H, W, 3) uint8, the subjects' matte (n, H, W) and their effects' gain (n, H, W) follow (what is
    behind the occluder is hidden, its shadow too)."""
    weight = occluders[..., None]
    mixed = np.rint(weight * background + (1 - weight) * frames.astype(np.float32))
    frames = np.where(weight > 0, mixed, frames).astype(np.uint8)
    alpha = None if alpha is None else (alpha * (1 - occluders)).astype(np.float32)
    if effects is not None:
        effects = (occluders + (1 - occluders) * effects).astype(np.float32)
    return frames, alpha, effects


def occluders_for(video, count: int, occlusion: str, occluder, subjects: list[np.ndarray], chunk: int = 16
                  ) -> np.ndarray | None:
    """(T, H, W) what passes in front of the subjects (each one's matte (T, H, W)) over `video` (a `Video` held in
    memory): a user's `occluder` (a matte file, read `chunk` frames at a time, or a (T, H, W) array in [0, 1]),
    else with ``auto`` the background's movers nearer the camera than them (`in_front`); None when nothing does."""
    size = video.frames.shape[1:3]
    if occluder is not None:
        if isinstance(occluder, np.ndarray):
            if occluder.ndim != 3 or len(occluder) < count or not np.all((occluder >= 0) & (occluder <= 1)):
                raise OptionError(f"occluder: expected a (T >= {count}, H, W) matte in [0, 1]")
            fronts = occluder[:count].astype(np.float32)
            return at_size(fronts, size)
        return np.concatenate(list(occluder_chunks(occluder, size, count, chunk)))
    if occlusion == "off":
        return None
    from ..video.layers import Video

    movers = movers_in_memory(Video(video.frames[:count], video.fps), count)
    return None if movers is None else in_front(movers, subjects)


def occlusion_record(occlusion: str, occluder, occluded_frames: int, count: int) -> dict:
    """JSON-able, for a result's meta: the mode (``occluder`` when a user's matte was given) and the share of its
    `count` frames where something passed in front (`occluded_frames` of them)."""
    return {"mode": "occluder" if occluder is not None else occlusion,
            "frames_occluded": round(occluded_frames / max(count, 1), 4)}


def occluded_frames(fronts: np.ndarray | None) -> int:
    """How many frames of `fronts` (T, H, W) or None have something in front (matte > 0.5 somewhere)."""
    return 0 if fronts is None else int((fronts > 0.5).any(axis=(1, 2)).sum())
