"""The in-memory clip types, `Video` and `Layers`, alpha compositing, and the Layers folder format.

Conventions (DESIGN.md): frames are (T, H, W, 3) uint8 RGB; the matte `alpha` is (T, H, W) float32 in [0, 1];
the foreground is premultiplied, ``round(frames * alpha)``, the subject on black; compositing everywhere is
``out = foreground + (1 - alpha) * background``, or with the subject's effects on the scene (shadow, reflection,
contact; `Layers.effects`, a gain over the background, 1 = untouched) ``foreground + (1 - alpha) * effects *
background``.

Layers folder (one clip's layers, written atomically)::

    layers.json      format, version, fps, num_frames, height, width, caption, fg_ratio, source, backends, seconds
                     (and with effects: effects_scale, effects_channels 1 or 3)
    source.mp4       the clip as split (H.264)          foreground.mp4   premultiplied subject on black (H.264)
    alpha.mkv        the matte, lossless FFV1: 8-bit gray by default, stored as round(alpha * 255) and read back as
                     value / 255 (``alpha_bits``: 16 stores gray16le, round(alpha * 65535), at about 5x the bytes)
    background.mp4   the clean plate, neither the subject nor its effects (H.264)
    preview.mp4      source | matte | foreground | background [| effects]
    effects.mkv      (version 2 only) the effects as a gain over the background, lossless FFV1 16-bit: gray16le for
                     (T, H, W) effects, gbrp16le for (T, H, W, 3); stored as min(round(gain * effects_scale), 65535)
                     with ``effects_scale`` 32768 (`EFFECTS_SCALE`, recorded in layers.json), read back as
                     value / effects_scale: gains in [0, 2) in steps of 1/32768, larger gains clip to 65535/32768

A folder is written as version 2 only when it has effects, else as version 1 (no effects.mkv, no effects keys), so
readers of version 1 keep reading every folder without effects; both versions load (version 1: effects None, 1
everywhere).

The colour files are H.264 yuv420p at crf `LAYERS_CRF` (recorded as ``video_crf``): loading gives exactly what
one encode at that quality gives, no more loss, except that the foreground is held to its matte
(`within_matte`: the chroma subsampling spills colour past the subject's edge). The matte and the effects are
exact after their documented quantisation.
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
from ..errors import LayersFormatError, MediaError, MissingFileError, OptionError, ShapeError
from .budget import check_frame_size, check_memory
from .rates import frame_rate

LAYERS_FORMAT = "splitmerge.layers"
LAYERS_VERSION = 2  # the newest version read and written; version 1 is written when a clip has no effects
LAYERS_VERSIONS = (1, 2)
ALPHA_BITS = 8
# Layers are training data: crf 14 keeps about 1.5-2 dB more than the crf 18 default of `write_video` (measured
# on the sample clips at 144x176 to 240x360) for about 1.7x the bytes. Previews stay at the default.
LAYERS_CRF = 14
LAYERS_FILES = ("layers.json", "source.mp4", "foreground.mp4", "alpha.mkv", "background.mp4", "preview.mp4")
EFFECTS_FILE = "effects.mkv"  # version 2, when the clip has effects
EFFECTS_SCALE = 32768  # stored uint16 = round(gain * EFFECTS_SCALE): gains in [0, 2) in steps of 1/32768


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


def _check_effects(name: str, array, shape: tuple[int, int, int]) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.shape not in (shape, (*shape, 3)):
        got = getattr(array, "shape", type(array).__name__)
        raise ShapeError(f"{name}: expected shape {shape} (T, H, W) or {(*shape, 3)} (T, H, W, 3), got {got}")
    if array.dtype != np.float32:
        raise ShapeError(f"{name}: expected dtype float32 (a gain, 1 = untouched), got {array.dtype}")
    if not np.isfinite(array).all() or array.min() < 0:
        raise ShapeError(f"{name}: values must be finite and >= 0")
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


def within_matte(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A premultiplied foreground (..., H, W, 3) uint8 held to its matte (..., H, W) in [0, 1]: no channel above
    ceil(255 alpha), as ``round(frames * alpha)`` never is. A decoded foreground.mp4 needs it: yuv420p shares
    one chroma sample between 2x2 pixels, so colour spills past the subject's edge onto alpha 0 (up to 100
    levels measured on 64x96 layers), and copy-paste would paste it."""
    limit = np.ceil(alpha.astype(np.float32) * 255)[..., None]
    return np.minimum(foreground, limit).astype(np.uint8)


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray,
              effects: np.ndarray | None = None) -> np.ndarray:
    """Alpha-composite a premultiplied foreground over a background: ``fg + (1 - alpha) * bg``, or with `effects`
    ``fg + (1 - alpha) * effects * bg``.

    Args:
        foreground: (..., H, W, 3) uint8, premultiplied (subject on black).
        alpha: (..., H, W) float in [0, 1], soft edges allowed.
        background: (..., H, W, 3) uint8.
        effects: None (1 everywhere), or a float gain >= 0 over the background, (..., H, W) or (..., H, W, 3),
            shaped like alpha or the foreground.
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
    if effects is not None:
        effects = np.asarray(effects)
        if effects.shape not in (alpha.shape, foreground.shape) or effects.dtype.kind != "f":
            raise ShapeError(f"composite: effects must be float shaped like alpha {alpha.shape} or the foreground "
                             f"{foreground.shape}, got {effects.shape} {effects.dtype}")
        effects = np.broadcast_to(effects, out_shape if effects.shape == foreground.shape else out_shape[:-1])
    out = np.empty(out_shape, dtype=np.uint8)
    foreground = np.broadcast_to(foreground, out_shape)
    background = np.broadcast_to(background, out_shape)
    alpha = np.broadcast_to(alpha, out_shape[:-1])
    for index in np.ndindex(out_shape[:-3]):
        a = np.clip(alpha[index].astype(np.float32), 0, 1)[..., None]
        plate = background[index].astype(np.float32)
        if effects is not None:
            gain = effects[index].astype(np.float32, copy=False)
            plate *= gain if gain.ndim == 3 else gain[..., None]
        value = foreground[index].astype(np.float32) + (1 - a) * plate
        out[index] = np.clip(np.rint(value), 0, 255)
    return out


def union_matte(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """The matte of a layer with matte `above` composited over layers whose matte is `below` (float, same shape,
    in [0, 1]): ``above + (1 - above) * below``, where any of them covers the frame."""
    return above + (1 - above) * below


def uncomposite(frames: np.ndarray, alpha: np.ndarray, background: np.ndarray,
                effects: np.ndarray | None = None) -> np.ndarray:
    """The premultiplied foreground a composite was made with: ``frames - (1 - alpha) * effects * background``
    (the inverse of `composite`; effects None = 1), (..., H, W, 3) uint8 rounded and clipped. Shapes as
    `composite`, effects shaped like alpha."""
    plate = background.astype(np.float32)
    if effects is not None:
        plate = plate * effects[..., None]
    return np.clip(np.rint(frames - (1 - alpha[..., None]) * plate), 0, 255).astype(np.uint8)


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
        meta: JSON-able: ``source`` (path, sha1, start_frame, stride, crop), ``backends``, ``seconds``,
            ``camera`` (when measured: the source camera, one row of 9 numbers per frame, its frame t -> its first
            frame; `source_camera`) and any other keys (saved under ``extra`` in layers.json).
        effects: None (1 everywhere: no effects), or (T, H, W) or (T, H, W, 3) float32 >= 0, the subject's effects
            on the scene (shadow, reflection, contact) as a gain over the background, 1 = untouched; the clip is
            ``foreground + (1 - alpha) * effects * background`` (`recomposite`). `gain` gives it as an array.
    """

    frames: np.ndarray
    alpha: np.ndarray
    foreground: np.ndarray
    background: np.ndarray
    fps: float
    caption: str = ""
    meta: dict = field(default_factory=dict)
    effects: np.ndarray | None = None

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
        if self.effects is not None:
            _check_effects("Layers.effects", self.effects, shape[:3])

    @property
    def gain(self) -> np.ndarray:
        """The effects as an array: `effects`, or without them a read-only (T, H, W) float32 view of ones (no
        memory)."""
        if self.effects is not None:
            return self.effects
        return np.broadcast_to(np.float32(1), self.alpha.shape)

    @classmethod
    def from_matte(cls, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, fps: float,
                   caption: str = "", meta: dict | None = None, effects: np.ndarray | None = None) -> "Layers":
        """Build layers from a clip and its matte (and optionally its effects); the foreground is the premultiplied
        subject."""
        _check_rgb("frames", frames)
        if np.asarray(alpha).shape != frames.shape[:3]:
            raise ShapeError(f"alpha: expected shape {frames.shape[:3]}, got {np.asarray(alpha).shape}")
        alpha = np.asarray(alpha, dtype=np.float32)
        return cls(frames, alpha, premultiply(frames, alpha), background, fps, caption, dict(meta or {}), effects)

    @property
    def fg_ratio(self) -> float:
        """Mean of alpha over T * H * W: the subject's share of the clip's volume."""
        return float(self.alpha.mean(dtype=np.float64))

    def recomposite(self) -> np.ndarray:
        """The foreground over the background with the effects, ``fg + (1 - alpha) * effects * background``,
        (T, H, W, 3) uint8 rounded."""
        return composite(self.foreground, self.alpha, self.background, self.effects)

    def video(self) -> Video:
        return Video(self.frames, self.fps, {"fps_rational": str(self.rate)})

    # ---------------------------------------------------------------------------------------------- folder I/O

    def save(self, directory: str | os.PathLike, *, preview: bool = True, crf: int = LAYERS_CRF,
             alpha_bits: int = ALPHA_BITS) -> Path:
        """Write the Layers folder atomically (a complete folder or none); an existing Layers folder is replaced.

        Refuses to replace a non-empty folder that is not a Layers folder, so user files are never clobbered.
        With `effects` the folder is version 2 with effects.mkv, else version 1.
        """
        with LayersWriter(directory, self.rate, preview=preview, crf=crf, alpha_bits=alpha_bits) as writer:
            for t in range(self.num_frames):
                writer.write(self.frames[t], self.alpha[t], self.foreground[t], self.background[t],
                             None if self.effects is None else self.effects[t])
            return writer.close(self.caption, self.meta)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Layers":
        """Read a Layers folder (version 1 or 2); every file is checked against layers.json, errors name the file
        at fault. Without effects.mkv (version 1, or version 2 without effects) `effects` is None."""
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
        # source, foreground, background (3 bytes a pixel each), the matte (4) and the effects (4 a channel, and
        # their stored uint16 while converting): all in memory at once
        effects_bytes = 6 * header["effects_channels"] if "effects_scale" in header else 0
        check_memory(header["num_frames"] * header["height"] * header["width"] * (13 + effects_bytes),
                     f"{folder}: loading it whole")
        clips = {}
        for name in ("source.mp4", "foreground.mp4", "background.mp4"):
            path = _required(folder / name)
            clips[name] = _expect_shape(path, read_video(path).frames, expected)
        alpha_path = _required(folder / "alpha.mkv")
        alpha = _expect_shape(alpha_path, read_matte(alpha_path), expected)
        effects = _read_effects(folder, header)
        meta = {"source": header.get("source", {}), "backends": header.get("backends", {}),
                "seconds": header.get("seconds", {}), "filters": header.get("filters", {}),
                "fps_rational": header.get("fps_rational"), **header.get("extra", {})}
        if "camera" in header:
            source_camera(header["camera"], header["num_frames"], folder / "layers.json",
                          (header["height"], header["width"]))
            meta["camera"] = header["camera"]
        try:
            return cls(clips["source.mp4"], alpha, within_matte(clips["foreground.mp4"], alpha),
                       clips["background.mp4"], header["fps"], header.get("caption", ""), meta, effects)
        except ShapeError as error:
            raise LayersFormatError(f"{folder}: {error}") from None


class LayersStream:
    """A Layers folder read a chunk of frames at a time (its subject: foreground and matte, and on request its
    effects), so a long clip never has to be in memory at once. The header is checked on opening; every chunk's
    size against it.

    Attributes: folder, num_frames, height, width, fps, caption, version (from ``layers.json``); has_effects,
    effects_scale and effects_channels (None without effects); camera ((T, 3, 3) `source_camera`, or None).
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
        self.version = header["version"]
        for name in ("foreground.mp4", "alpha.mkv"):
            _required(self.folder / name)
        self.has_effects = _effects_path(self.folder, header) is not None
        self.effects_scale = header.get("effects_scale")
        self.effects_channels = header.get("effects_channels")
        self.camera = (source_camera(header["camera"], self.num_frames, self.folder / "layers.json",
                                     (self.height, self.width)) if "camera" in header else None)

    def _sized(self, name: str, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != (self.height, self.width):
            raise LayersFormatError(f"{self.folder / name}: frames of {frame.shape[1]}x{frame.shape[0]}, "
                                    f"layers.json says {self.width}x{self.height}")
        return frame

    def _gains(self, count: int) -> Iterator[np.ndarray]:
        from .io import VideoReader

        path = self.folder / EFFECTS_FILE
        try:
            reader = VideoReader(path, max_frames=count, pixels="raw")
        except MediaError as error:
            raise LayersFormatError(str(error)) from None
        _check_effects_format(path, reader.info, self.effects_channels)
        scale = np.float32(self.effects_scale)
        for plane in reader:
            yield np.divide(self._sized(EFFECTS_FILE, plane), scale, dtype=np.float32)

    def chunks(self, count: int, chunk: int, colour: bool = True, effects: bool = False
               ) -> Iterator[tuple[np.ndarray | None, ...]]:
        """The first `count` frames as (foreground (n, H, W, 3) uint8 or None without `colour`, alpha (n, H, W)
        float32) chunks of up to `chunk` frames; with `effects`, (foreground, alpha, effects) triples, the effects
        (n, H, W) or (n, H, W, 3) float32 (ones (n, H, W) for a folder without them)."""
        from .io import VideoReader, _is_16_bit, iter_chunks

        reader = VideoReader(self.folder / "alpha.mkv", max_frames=count, pixels="gray")
        peak = np.float32(65535 if _is_16_bit(reader.info.pix_fmt) else 255)
        mattes = iter_chunks((self._sized("alpha.mkv", plane).astype(np.float32) / peak for plane in reader), chunk)
        colours = iter_chunks((self._sized("foreground.mp4", frame) for frame in
                               VideoReader(self.folder / "foreground.mp4", max_frames=count)), chunk) if colour else ()
        gains = iter_chunks(self._gains(count), chunk) if effects and self.has_effects else ()
        given = 0
        for alpha, foreground, gain in zip_longest(mattes, colours, gains):
            if alpha is None or (colour and (foreground is None or len(alpha) != len(foreground))):
                raise LayersFormatError(f"{self.folder}: foreground.mp4 and alpha.mkv have different frame counts")
            if gains and (gain is None or len(gain) != len(alpha)):
                raise LayersFormatError(f"{self.folder}: {EFFECTS_FILE} and alpha.mkv have different frame counts")
            given += len(alpha)
            foreground = within_matte(foreground, alpha) if colour else foreground
            if effects:
                yield foreground, alpha, (gain if gains else np.ones(alpha.shape, np.float32))
            else:
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
                writer.write(frame, alpha, foreground, background)   # effects=...: a version 2 folder
            writer.close(caption, meta)

    Either every frame gives `effects` (the folder is version 2, with effects.mkv) or none does (version 1).
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
        self._effects = None  # a GainWriter, from the first frame that gives effects
        self._effects_channels: int | None = None
        self.num_frames = 0
        self._alpha_sum = 0.0
        self._size: tuple[int, int] | None = None

    def _writers(self) -> list:
        return [*self._videos.values(), self._matte, *([self._preview] if self._preview else []),
                *([self._effects] if self._effects else [])]

    def write(self, frame: np.ndarray, alpha: np.ndarray, foreground: np.ndarray, background: np.ndarray,
              effects: np.ndarray | None = None) -> None:
        """Append one frame: (H, W, 3) uint8 clip, (H, W) float32 matte in [0, 1], foreground, background, and
        optionally the effects, (H, W) or (H, W, 3) float32 >= 0 (see `Layers.effects`)."""
        from .io import GainWriter
        from .preview import layers_preview_frame, preview_height

        try:
            one = Layers(frame[None], alpha[None], foreground[None], background[None], float(self.rate),
                         effects=effects[None] if isinstance(effects, np.ndarray) else effects)
            if self._size is None:
                self._size = (one.height, one.width)
            elif (one.height, one.width) != self._size:
                raise ShapeError(f"{self.target}: frame {self.num_frames} is {one.width}x{one.height}, earlier "
                                 f"frames were {self._size[1]}x{self._size[0]}")
            channels = None if effects is None else (3 if effects.ndim == 3 else 1)
            if self.num_frames and channels != self._effects_channels:
                said = {None: "no effects", 1: "one-channel effects", 3: "three-channel effects"}
                raise ShapeError(f"{self.target}: frame {self.num_frames} has {said[channels]}, earlier frames had "
                                 f"{said[self._effects_channels]}")
            self._effects_channels = channels
            if channels and self._effects is None:
                self._effects = GainWriter(self._folder / EFFECTS_FILE, self.rate, scale=EFFECTS_SCALE)
            self._videos["source"].write(frame)
            self._videos["foreground"].write(foreground)
            self._videos["background"].write(background)
            self._matte.write(alpha)
            if self._effects is not None:
                self._effects.write(effects)
            if self._preview is not None:
                self._preview.write(layers_preview_frame(frame, alpha, foreground, background,
                                                         preview_height(one.height), effects))
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
        known = ("source", "backends", "seconds", "fps_rational", "filters", "camera")
        effects = {"effects_scale": EFFECTS_SCALE, "effects_channels": self._effects_channels} \
            if self._effects_channels else {}
        return {
            "format": LAYERS_FORMAT, "version": 2 if effects else 1, **effects,
            "fps": float(self.rate), "fps_rational": str(self.rate), "num_frames": self.num_frames,
            "height": height, "width": width, "caption": " ".join(str(caption).split()),
            "fg_ratio": round(self._alpha_sum / (self.num_frames * height * width), 6),
            "alpha_bits": self.alpha_bits, "video_crf": self.crf,
            "source": meta.get("source", {}), "backends": meta.get("backends", {}),
            "seconds": meta.get("seconds", {}), "filters": meta.get("filters", {}),
            "extra": {k: v for k, v in meta.items() if k not in known},
            **({"camera": meta["camera"]} if meta.get("camera") is not None else {}),
        }


CAMERA_LIMIT = 1e6   # no entry of a camera map is this large (a frame's maps move it by pixels, not by millions)


def source_camera(record, num_frames: int, name, size: tuple[int, int] | None = None) -> np.ndarray:
    """(T, 3, 3) float64 from a ``camera`` record (one row of 9 numbers per frame, or (T, 3, 3): the clip's frame
    t -> its first frame), or a `LayersFormatError` naming `name` when it is not one finite, invertible map per
    frame that keeps the (H, W) frame of `size` (when given) in front of the camera."""
    try:
        maps = np.asarray(record, dtype=np.float64)
    except (TypeError, ValueError):
        maps = np.zeros(0)
    if maps.ndim == 3 and maps.shape[1:] == (3, 3):
        maps = maps.reshape(len(maps), 9)
    if maps.shape != (num_frames, 9) or not np.all(np.isfinite(maps)) or np.abs(maps).max() >= CAMERA_LIMIT:
        raise LayersFormatError(f"{name}: camera must be {num_frames} rows of 9 finite numbers (a 3x3 map per "
                                f"frame, entries below {CAMERA_LIMIT:g})")
    maps = maps.reshape(-1, 3, 3)
    if np.any(np.abs(np.linalg.det(maps)) < 1e-9):
        raise LayersFormatError(f"{name}: camera holds a map that cannot be inverted")
    if size is not None:
        height, width = size
        corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
        if np.any(np.einsum("tj,cj->tc", maps[:, 2], corners) <= 0):
            raise LayersFormatError(f"{name}: camera holds a map that sends part of the frame behind the camera")
    return maps


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
    if header.get("version") not in LAYERS_VERSIONS or isinstance(header.get("version"), bool):
        raise LayersFormatError(f"{path}: unsupported version {header.get('version')!r} "
                                f"(this splitmerge reads versions {' and '.join(map(str, LAYERS_VERSIONS))})")
    if header["version"] == 1:  # version 1 has no effects: keys of that name are not ours to read
        header.pop("effects_scale", None)
        header.pop("effects_channels", None)
    elif "effects_scale" in header or "effects_channels" in header:
        scale = header.get("effects_scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise LayersFormatError(f"{path}: effects_scale must be a positive number, got {scale!r}")
        if header.get("effects_channels") not in (1, 3) or isinstance(header.get("effects_channels"), bool):
            raise LayersFormatError(f"{path}: effects_channels must be 1 or 3, got {header.get('effects_channels')!r}")
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


def _effects_path(folder: Path, header: dict) -> Path | None:
    """effects.mkv when layers.json (version 2) describes effects (the file must then exist), else None; an
    effects.mkv that a version 2 layers.json does not describe is refused (its scale is unknown)."""
    path = folder / EFFECTS_FILE
    if "effects_scale" in header:
        return _required(path)
    if header["version"] >= 2 and path.exists():
        raise LayersFormatError(f"{path}: present, but {folder / 'layers.json'} has no effects_scale to read it with")
    return None


def _check_effects_format(path: Path, info, channels: int) -> None:
    wanted = "gray16le" if channels == 1 else "gbrp16le"
    if info.pix_fmt != wanted:
        raise LayersFormatError(f"{path}: expected lossless 16-bit effects ({info.codec} {info.pix_fmt} found, "
                                f"{wanted} for the {channels} channel(s) layers.json says)")


def _read_effects(folder: Path, header: dict) -> np.ndarray | None:
    """The effects of a Layers folder, (T, H, W) or (T, H, W, 3) float32, or None without them."""
    from .io import probe, read_gain

    path = _effects_path(folder, header)
    if path is None:
        return None
    try:
        _check_effects_format(path, probe(path), header["effects_channels"])
        effects = read_gain(path, header["effects_scale"])
    except MediaError as error:
        raise LayersFormatError(str(error)) from None
    return _expect_shape(path, effects, (header["num_frames"], header["height"], header["width"]))


def _expect_shape(path: Path, array: np.ndarray, expected: tuple[int, int, int]) -> np.ndarray:
    got = array.shape[:3]
    if got != expected:
        raise LayersFormatError(f"{path}: {got[0]} frames of {got[2]}x{got[1]}, "
                                f"layers.json says {expected[0]} frames of {expected[2]}x{expected[1]}")
    return array

