"""The in-memory clip types, `Video` and `Layers`, alpha compositing, and the Layers folder format.

Conventions (DESIGN.md): frames are (T, H, W, 3) uint8 RGB; the matte `alpha` is (T, H, W) float32 in [0, 1];
the foreground is premultiplied, ``round(frames * alpha)``, the subject on black; compositing everywhere is
``out = foreground + (1 - alpha) * background``.

Layers folder (one clip's layers, written atomically)::

    layers.json      format, version, fps, num_frames, height, width, caption, fg_ratio, source, backends, seconds
    source.mp4       the clip as split (H.264)          foreground.mp4   premultiplied subject on black (H.264)
    alpha.mkv        the matte, lossless FFV1: 8-bit gray by default, stored as round(alpha * 255) and read back as
                     value / 255 (``alpha_bits``: 16 stores gray16le, round(alpha * 65535), at about 5x the bytes)
    background.mp4   the clean plate (H.264)            preview.mp4      source | matte | foreground | background

The colour files are H.264 yuv420p at crf `LAYERS_CRF` (recorded as ``video_crf``): loading gives exactly what one
encode at that quality gives, no more loss. The matte is exact after its documented quantisation.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import zip_longest
from pathlib import Path
from typing import Iterator

import numpy as np

from ..atomic import atomic_dir
from ..errors import LayersFormatError, MissingFileError, OptionError, ShapeError
from .budget import check_frame_size, check_memory
from .rates import frame_rate

LAYERS_FORMAT = "splitmerge.layers"
LAYERS_VERSION = 1
ALPHA_BITS = 8
# Layers are training data: crf 14 keeps about 1.5-2 dB more than the crf 18 default of `write_video` (measured
# on the sample clips at 144x176 to 240x360) for about 1.7x the bytes. Previews stay at the default.
LAYERS_CRF = 14
LAYERS_FILES = ("layers.json", "source.mp4", "foreground.mp4", "alpha.mkv", "background.mp4", "preview.mp4")


# ---------------------------------------------------------------------------------------------------- validation


def _check_rgb(name: str, array, frames: int | None = None) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ShapeError(f"{name}: expected a numpy array, got {type(array).__name__}")
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ShapeError(f"{name}: expected shape (T, H, W, 3), got {array.shape}")
    if array.dtype != np.uint8:
        raise ShapeError(f"{name}: expected dtype uint8, got {array.dtype}")
    if array.shape[0] < 1 or array.shape[1] < 1 or array.shape[2] < 1:
        raise ShapeError(f"{name}: empty clip, shape {array.shape}")
    return array


def _check_fps(fps) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ShapeError(f"fps {fps!r}: not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ShapeError(f"fps {fps!r}: must be a positive finite number")
    return value


def _rate(fps: float, meta: dict) -> Fraction:
    """The exact frame rate: the rational kept in meta when it agrees with `fps`, else `fps` made rational."""
    text = meta.get("fps_rational")
    if text:
        try:
            exact = frame_rate(str(text))
            if abs(float(exact) - fps) < 1e-6 * fps:
                return exact
        except OptionError:
            pass
    return frame_rate(fps)


# --------------------------------------------------------------------------------------------------------- Video


class _Clip:
    """What `Video` and `Layers` share: sizes and timing read off `frames` (T, H, W, 3), `fps` and `meta`."""

    frames: np.ndarray
    fps: float
    meta: dict

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.num_frames / self.fps

    @property
    def rate(self) -> Fraction:
        """The exact frame rate as a fraction (e.g. 30000/1001)."""
        return _rate(self.fps, self.meta)


@dataclass
class Video(_Clip):
    """A clip in memory.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        fps: frames per second (float; the exact rational, when known, is ``meta["fps_rational"]``).
        meta: provenance (source path, frame range, crop box of a resize, ...), JSON-able.
    """

    frames: np.ndarray
    fps: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_rgb("Video.frames", self.frames)
        self.fps = _check_fps(self.fps)



# --------------------------------------------------------------------------------------------------- compositing


def premultiply(frames: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round(frames * alpha): (..., H, W, 3) uint8 times (..., H, W) float in [0, 1] -> (..., H, W, 3) uint8."""
    out = np.empty(np.broadcast_shapes(frames.shape, alpha.shape + (3,)), dtype=np.uint8)
    for index in np.ndindex(out.shape[:-3]):  # frame by frame: no full-clip float temporaries
        product = frames[index].astype(np.float32) * alpha[index][..., None]
        out[index] = np.clip(np.rint(product), 0, 255)
    return out


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Alpha-composite a premultiplied foreground over a background: ``fg + (1 - alpha) * bg``.

    Args:
        foreground: (..., H, W, 3) uint8, premultiplied (subject on black).
        alpha: (..., H, W) float in [0, 1], soft edges allowed.
        background: (..., H, W, 3) uint8.
    Returns:
        (..., H, W, 3) uint8, rounded to nearest.
    """
    foreground, alpha, background = np.asarray(foreground), np.asarray(alpha), np.asarray(background)
    if foreground.shape[-1:] != (3,) or background.shape[-1:] != (3,):
        raise ShapeError(f"composite: foreground {foreground.shape} and background {background.shape} "
                         f"must end in 3 colour channels")
    if alpha.shape != foreground.shape[:-1] or background.shape[-3:] != foreground.shape[-3:]:
        raise ShapeError(f"composite: shapes disagree: foreground {foreground.shape}, alpha {alpha.shape}, "
                         f"background {background.shape}")
    if alpha.dtype.kind != "f":
        raise ShapeError(f"composite: alpha must be float in [0, 1], got {alpha.dtype}")
    out_shape = np.broadcast_shapes(foreground.shape, background.shape)
    out = np.empty(out_shape, dtype=np.uint8)
    foreground = np.broadcast_to(foreground, out_shape)
    background = np.broadcast_to(background, out_shape)
    alpha = np.broadcast_to(alpha, out_shape[:-1])
    for index in np.ndindex(out_shape[:-3]):
        a = np.clip(alpha[index].astype(np.float32), 0, 1)[..., None]
        value = foreground[index].astype(np.float32) + (1 - a) * background[index].astype(np.float32)
        out[index] = np.clip(np.rint(value), 0, 255)
    return out


# -------------------------------------------------------------------------------------------------------- Layers


@dataclass
class Layers(_Clip):
    """One clip split into layers.

    Attributes:
        frames: (T, H, W, 3) uint8, the clip that was split (for a composite: the composed video).
        alpha: (T, H, W) float32 in [0, 1], the subject's matte.
        foreground: (T, H, W, 3) uint8, premultiplied subject on black, normally ``round(frames * alpha)``.
        background: (T, H, W, 3) uint8, the clean plate (subject removed, hole filled).
        fps: frames per second.
        caption: text describing the clip.
        meta: JSON-able: ``source`` (path, sha1, start_frame, stride, crop), ``backends``, ``seconds`` and any
            other keys (saved under ``extra`` in layers.json).
    """

    frames: np.ndarray
    alpha: np.ndarray
    foreground: np.ndarray
    background: np.ndarray
    fps: float
    caption: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_rgb("Layers.frames", self.frames)
        shape = self.frames.shape
        _check_rgb("Layers.foreground", self.foreground)
        _check_rgb("Layers.background", self.background)
        for name, array in (("foreground", self.foreground), ("background", self.background)):
            if array.shape != shape:
                raise ShapeError(f"Layers.{name}: shape {array.shape} differs from frames {shape}")
        if not isinstance(self.alpha, np.ndarray) or self.alpha.shape != shape[:3]:
            got = getattr(self.alpha, "shape", type(self.alpha).__name__)
            raise ShapeError(f"Layers.alpha: expected shape {shape[:3]} (T, H, W), got {got}")
        if self.alpha.dtype != np.float32:
            raise ShapeError(f"Layers.alpha: expected dtype float32 in [0, 1], got {self.alpha.dtype}")
        if not np.isfinite(self.alpha).all() or self.alpha.min() < 0 or self.alpha.max() > 1:
            raise ShapeError("Layers.alpha: values must be finite and within [0, 1]")
        self.fps = _check_fps(self.fps)
        if not isinstance(self.caption, str):
            raise ShapeError(f"Layers.caption: expected str, got {type(self.caption).__name__}")

    @classmethod
    def from_matte(cls, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, fps: float,
                   caption: str = "", meta: dict | None = None) -> "Layers":
        """Build layers from a clip and its matte; the foreground is the premultiplied subject."""
        _check_rgb("frames", frames)
        if np.asarray(alpha).shape != frames.shape[:3]:
            raise ShapeError(f"alpha: expected shape {frames.shape[:3]}, got {np.asarray(alpha).shape}")
        alpha = np.asarray(alpha, dtype=np.float32)
        return cls(frames, alpha, premultiply(frames, alpha), background, fps, caption, dict(meta or {}))

    @property
    def fg_ratio(self) -> float:
        """Mean of alpha over T * H * W: the subject's share of the clip's volume."""
        return float(self.alpha.mean(dtype=np.float64))

    def recomposite(self) -> np.ndarray:
        """The foreground over the background, (T, H, W, 3) uint8."""
        return composite(self.foreground, self.alpha, self.background)

    def video(self) -> Video:
        return Video(self.frames, self.fps, {"fps_rational": str(self.rate)})

    # ---------------------------------------------------------------------------------------------- folder I/O

    def save(self, directory: str | os.PathLike, *, preview: bool = True, crf: int = LAYERS_CRF,
             alpha_bits: int = ALPHA_BITS) -> Path:
        """Write the Layers folder atomically (a complete folder or none); an existing Layers folder is replaced.

        Refuses to replace a non-empty folder that is not a Layers folder, so user files are never clobbered.
        """
        with LayersWriter(directory, self.rate, preview=preview, crf=crf, alpha_bits=alpha_bits) as writer:
            for t in range(self.num_frames):
                writer.write(self.frames[t], self.alpha[t], self.foreground[t], self.background[t])
            return writer.close(self.caption, self.meta)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Layers":
        """Read a Layers folder; every file is checked against layers.json, errors name the file at fault."""
        from .io import read_matte, read_video

        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise OptionError(f"Layers folder {directory!r}: expected a folder path")
        folder = Path(directory)
        if not folder.exists():
            raise MissingFileError(f"{folder}: no such Layers folder")
        if not folder.is_dir():
            raise LayersFormatError(f"{folder}: not a folder (a Layers folder holds layers.json and videos)")
        header = _read_header(folder / "layers.json")
        expected = (header["num_frames"], header["height"], header["width"])
        # source, foreground, background (3 bytes a pixel each) and the matte (4): all in memory at once
        check_memory(header["num_frames"] * header["height"] * header["width"] * 13, f"{folder}: loading it whole")
        clips = {}
        for name in ("source.mp4", "foreground.mp4", "background.mp4"):
            path = _required(folder / name)
            clips[name] = _expect_shape(path, read_video(path).frames, expected)
        alpha_path = _required(folder / "alpha.mkv")
        alpha = _expect_shape(alpha_path, read_matte(alpha_path), expected)
        meta = {"source": header.get("source", {}), "backends": header.get("backends", {}),
                "seconds": header.get("seconds", {}), "filters": header.get("filters", {}),
                "fps_rational": header.get("fps_rational"), **header.get("extra", {})}
        try:
            return cls(clips["source.mp4"], alpha, clips["foreground.mp4"], clips["background.mp4"],
                       header["fps"], header.get("caption", ""), meta)
        except ShapeError as error:
            raise LayersFormatError(f"{folder}: {error}") from None


class LayersStream:
    """A Layers folder read a chunk of frames at a time (its subject: foreground and matte), so a long clip
    never has to be in memory at once. The header is checked on opening; every chunk's size against it.

    Attributes: folder, num_frames, height, width, fps, caption (from ``layers.json``).
    """

    def __init__(self, directory: str | os.PathLike):
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise OptionError(f"Layers folder {directory!r}: expected a folder path")
        self.folder = Path(directory)
        if not self.folder.is_dir():
            raise MissingFileError(f"{self.folder}: no such Layers folder")
        header = _read_header(self.folder / "layers.json")
        self.num_frames, self.height, self.width = header["num_frames"], header["height"], header["width"]
        self.fps, self.caption = float(header["fps"]), header.get("caption", "")
        for name in ("foreground.mp4", "alpha.mkv"):
            _required(self.folder / name)

    def _sized(self, name: str, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != (self.height, self.width):
            raise LayersFormatError(f"{self.folder / name}: frames of {frame.shape[1]}x{frame.shape[0]}, "
                                    f"layers.json says {self.width}x{self.height}")
        return frame

    def chunks(self, count: int, chunk: int, colour: bool = True) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
        """The first `count` frames as (foreground (n, H, W, 3) uint8 or None without `colour`, alpha (n, H, W)
        float32) chunks of up to `chunk` frames."""
        from .io import VideoReader, _is_16_bit, iter_chunks

        reader = VideoReader(self.folder / "alpha.mkv", max_frames=count, pixels="gray")
        peak = np.float32(65535 if _is_16_bit(reader.info.pix_fmt) else 255)
        mattes = iter_chunks((self._sized("alpha.mkv", plane).astype(np.float32) / peak for plane in reader), chunk)
        colours = iter_chunks((self._sized("foreground.mp4", frame) for frame in
                               VideoReader(self.folder / "foreground.mp4", max_frames=count)), chunk) if colour else ()
        given = 0
        for alpha, foreground in zip_longest(mattes, colours):
            if alpha is None or (colour and (foreground is None or len(alpha) != len(foreground))):
                raise LayersFormatError(f"{self.folder}: foreground.mp4 and alpha.mkv have different frame counts")
            given += len(alpha)
            yield foreground, alpha
        wanted = min(count, self.num_frames)
        if given < wanted:
            raise LayersFormatError(f"{self.folder / 'alpha.mkv'}: ends after {given} frames; layers.json says "
                                    f"{self.num_frames}")


class LayersWriter:
    """Write a Layers folder frame by frame, so a long clip never has to be in memory at once.

    Everything goes into a temporary sibling folder that `close` renames into place (`atomic_dir`); `abort`, an
    exception inside a ``with`` block, a block that never calls `close`, or a crash leaves no folder at the
    target. Use::

        with LayersWriter(directory, fps) as writer:
            for frame, alpha, foreground, background in ...:   # (H, W, 3) uint8, (H, W) float32, ...
                writer.write(frame, alpha, foreground, background)
            writer.close(caption, meta)
    """

    def __init__(self, directory: str | os.PathLike, fps, *, preview: bool = True, crf: int = LAYERS_CRF,
                 alpha_bits: int = ALPHA_BITS):
        from .io import MatteWriter, VideoWriter

        self.target = Path(directory)
        if self.target.exists() and (not self.target.is_dir() or (any(self.target.iterdir()) and
                                                                  not (self.target / "layers.json").exists())):
            raise LayersFormatError(f"{self.target}: exists and is not a Layers folder; refusing to overwrite it")
        self.rate = frame_rate(fps)
        self.crf, self.alpha_bits = crf, alpha_bits
        self._atomic = atomic_dir(self.target)
        self._folder = self._atomic.__enter__()
        self._videos = {name: VideoWriter(self._folder / f"{name}.mp4", self.rate, crf=crf)
                        for name in ("source", "foreground", "background")}
        self._matte = MatteWriter(self._folder / "alpha.mkv", self.rate, bits=alpha_bits)
        self._preview = VideoWriter(self._folder / "preview.mp4", self.rate) if preview else None
        self.num_frames = 0
        self._alpha_sum = 0.0
        self._size: tuple[int, int] | None = None

    def _writers(self) -> list:
        return [*self._videos.values(), self._matte, *([self._preview] if self._preview else [])]

    def write(self, frame: np.ndarray, alpha: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> None:
        """Append one frame: (H, W, 3) uint8 clip, (H, W) float32 matte in [0, 1], foreground, background."""
        from .preview import layers_preview_frame, preview_height

        try:
            one = Layers(frame[None], alpha[None], foreground[None], background[None], float(self.rate))
            if self._size is None:
                self._size = (one.height, one.width)
            elif (one.height, one.width) != self._size:
                raise ShapeError(f"{self.target}: frame {self.num_frames} is {one.width}x{one.height}, earlier "
                                 f"frames were {self._size[1]}x{self._size[0]}")
            self._videos["source"].write(frame)
            self._videos["foreground"].write(foreground)
            self._videos["background"].write(background)
            self._matte.write(alpha)
            if self._preview is not None:
                self._preview.write(layers_preview_frame(frame, alpha, foreground, background,
                                                         preview_height(one.height)))
            self.num_frames += 1
            self._alpha_sum += float(alpha.sum(dtype=np.float64))
        except BaseException:
            self.abort()
            raise

    def close(self, caption: str = "", meta: dict | None = None) -> Path:
        """Finish every file, write layers.json, and move the folder into place. Returns its path."""
        try:
            if self.num_frames == 0:
                raise ShapeError(f"{self.target}: no frames to write")
            for writer in self._writers():
                writer.close()
            header = self._header(caption, dict(meta or {}))
            (self._folder / "layers.json").write_text(json.dumps(header, indent=2) + "\n")
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)
        except BaseException:
            self.abort()
            raise
        return self.target

    def abort(self) -> None:
        """Discard the temporary folder; the target is left as it was."""
        for writer in self._writers():
            writer.abort()
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if self._atomic is not None:
            self.abort()  # an exception, or a block that never called close()

    def _header(self, caption: str, meta: dict) -> dict:
        height, width = self._size
        known = ("source", "backends", "seconds", "fps_rational", "filters")
        return {
            "format": LAYERS_FORMAT, "version": LAYERS_VERSION,
            "fps": float(self.rate), "fps_rational": str(self.rate), "num_frames": self.num_frames,
            "height": height, "width": width, "caption": " ".join(str(caption).split()),
            "fg_ratio": round(self._alpha_sum / (self.num_frames * height * width), 6),
            "alpha_bits": self.alpha_bits, "video_crf": self.crf,
            "source": meta.get("source", {}), "backends": meta.get("backends", {}),
            "seconds": meta.get("seconds", {}), "filters": meta.get("filters", {}),
            "extra": {k: v for k, v in meta.items() if k not in known},
        }


def _required(path: Path) -> Path:
    if not path.exists():
        raise LayersFormatError(f"{path}: missing from the Layers folder")
    return path


def _read_header(path: Path) -> dict:
    _required(path)
    try:
        header = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LayersFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != LAYERS_FORMAT:
        raise LayersFormatError(f"{path}: not a splitmerge layers.json (format must be {LAYERS_FORMAT!r})")
    if header.get("version") != LAYERS_VERSION:
        raise LayersFormatError(f"{path}: unsupported version {header.get('version')!r} "
                                f"(this splitmerge reads version {LAYERS_VERSION})")
    for key in ("num_frames", "height", "width"):
        if not isinstance(header.get(key), int) or header[key] < 1:
            raise LayersFormatError(f"{path}: {key} must be a positive integer, got {header.get(key)!r}")
    try:
        _check_fps(header.get("fps"))
    except ShapeError as error:
        raise LayersFormatError(f"{path}: {error}") from None
    if not isinstance(header.get("caption", ""), str):
        raise LayersFormatError(f"{path}: caption must be a string")
    for key in ("source", "backends", "seconds", "filters", "extra"):
        if not isinstance(header.get(key, {}), dict):
            raise LayersFormatError(f"{path}: {key} must be an object, got {type(header[key]).__name__}")
    check_frame_size(header["height"], header["width"], str(path))
    return header


def _expect_shape(path: Path, array: np.ndarray, expected: tuple[int, int, int]) -> np.ndarray:
    got = array.shape[:3]
    if got != expected:
        raise LayersFormatError(f"{path}: {got[0]} frames of {got[2]}x{got[1]}, "
                                f"layers.json says {expected[0]} frames of {expected[2]}x{expected[1]}")
    return array

