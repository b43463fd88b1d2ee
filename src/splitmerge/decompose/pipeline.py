"""The Decomposer: a video becomes Layers (subject, matte, clean background, caption), window by window.

The video is read as a stream and cut into windows of `SplitConfig.window` frames that overlap by
`SplitConfig.overlap`. Each window is split on its own (segmenter, optional refiner, restorer; the camera motion
is estimated once per window and shared), the overlapping frames are cross-faded between neighbouring windows,
and finished frames go straight to a sink: a `LayersWriter` for `split_to_folder` (memory bounded by a window,
whatever the video's length) or an in-memory collector for `split`. Later windows prefer the object that the
previous window kept, so a long video keeps one subject.

Choosing the subject: by default the most salient consistent mover (the segmenter's choice). With `point` or
`box` (fractions of the first frame split, after any `size` crop), the first window keeps the mover the pick
hits in its first frames (`NoSubjectError` naming the pick when it hits none) and every later window follows it
through the prior alone: anything else that moves stays in the background. A scene cut ends the picked subject:
later shots have no subject (nothing is carried across a cut).

Working size: `size` if given (centre-crop then resize, like `read_video`), else the video's own size brought
down to at most `DEFAULT_MAX_HEIGHT` pixels high with its aspect kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config_types import check_field_types
from ..errors import MediaError, OptionError, SplitMergeError
from ..fileinfo import file_sha1
from ..paths import check_output
from ..video.budget import check_memory
from ..video.cuts import CutDetector
from ..video.geometry import capped_size, parse_size
from ..video.io import VideoReader
from ..video.layers import Layers, LayersWriter, Video, premultiply
from .backends import Segmentation, SplitClip, SubjectPick, get_backend
from .camera import CameraChain
from .restore import extend_hole
from .filters import present_frames, verdict
from .motion import PICK_SEARCH

DEFAULT_MAX_HEIGHT = 480
MIN_FRAMES = 4
MIN_SIDE = 32
WINDOW = 64
OVERLAP = 8
# Peak memory of a window, per frame pixel: 52 B measured (64 frames, 120x180 vs 240x360, peak RSS); with margin.
SPLIT_BYTES_PER_PIXEL = 64


class NoSubjectError(SplitMergeError):
    """Splitting found no moving subject (a static video, or nothing that moves on its own)."""

    def __init__(self, message: str, reason: str = "no moving subject"):
        super().__init__(message)
        self.reason = reason


@dataclass
class SplitConfig:
    """Everything `split` can be told. Backend names come from the registry (`splitmerge split --help`).

    `backend_options` maps a backend *name* to keyword options for its constructor, e.g.
    ``{"sam2": {"model_path": "/models/sam2"}, "http": {"url": "http://localhost:8000/v1"}}``.

    `point` (x, y) or `box` (x0, y0, x1, y1), fractions of the first frame's width and height, choose the
    subject (see the module's docstring); neither with `all_objects`. `effects`: move the subject's cast shadow
    out of the matte into the effects layer (`decompose.effects`; Layers version 2), else version 1 layers.
    """

    segmenter: str = "motion"
    refiner: str | None = None
    restorer: str = "propagate"
    matting: str = "rule"
    captioner: str = "measured"
    caption: str | None = None
    all_objects: bool = False
    size: tuple[int, int] | str | None = None
    frames: int | None = None
    start: int = 0
    stride: int = 1
    window: int = WINDOW
    overlap: int = OVERLAP
    backend_options: dict = field(default_factory=dict)
    point: list | None = None
    box: list | None = None
    effects: bool = True

    def __post_init__(self):
        check_field_types(self, "split option")
        self.size = parse_size(self.size)
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < MIN_FRAMES):
            raise OptionError(f"frames {self.frames!r}: splitting needs at least {MIN_FRAMES} frames")
        if not isinstance(self.window, int) or self.window < 2 * MIN_FRAMES:
            raise OptionError(f"window {self.window!r}: must be an integer >= {2 * MIN_FRAMES}")
        if not isinstance(self.overlap, int) or not 0 <= self.overlap <= self.window // 2:
            raise OptionError(f"overlap {self.overlap!r}: must be between 0 and window / 2")
        if self.caption is not None and not isinstance(self.caption, str):
            raise OptionError("caption must be text")
        pick = self.pick()
        if pick is not None:
            if self.all_objects:
                raise OptionError(f"all_objects keeps every mover: it cannot be combined with a {pick.describe()}")
            self.point, self.box = pick.point, pick.box

    def pick(self) -> SubjectPick | None:
        """The chosen subject as a `SubjectPick`, or None (the segmenter's own choice)."""
        if self.point is None and self.box is None:
            return None
        return SubjectPick(None if self.point is None else tuple(self.point),
                           None if self.box is None else tuple(self.box))

    def options_for(self, name: str | None) -> dict:
        return dict(self.backend_options.get(name, {})) if name else {}


# ---------------------------------------------------------------------------------------------------- sources


@dataclass
class _Source:
    frames: Iterator[np.ndarray]
    fps: float
    fps_rational: str
    size: tuple[int, int]
    expected: int
    provenance: dict


def _working_size(height: int, width: int, requested) -> tuple[int, int] | None:
    return requested if requested is not None else capped_size(height, width, DEFAULT_MAX_HEIGHT)


def _open_source(source, config: SplitConfig) -> _Source:
    if not isinstance(source, (Video, str, os.PathLike)):
        raise OptionError(f"source {type(source).__name__}: expected a video file or a Video")
    if isinstance(source, Video):
        frames = source.frames[config.start::config.stride][:config.frames]
        if config.size is not None or frames.shape[1] > DEFAULT_MAX_HEIGHT:
            from ..video.geometry import apply_resize, plan_resize

            size = _working_size(*frames.shape[1:3], config.size)
            plan = plan_resize(frames.shape[1:3], size)
            frames = np.stack([apply_resize(frame, plan) for frame in frames])
            crop = plan.to_dict()
        else:
            crop = None
        rate = source.rate / config.stride
        return _Source(iter(frames), float(rate), str(rate), frames.shape[1:3], len(frames),
                       {"path": source.meta.get("source", {}).get("path"), "sha1": None,
                        "start_frame": config.start, "stride": config.stride, "crop": crop})
    path = Path(source)
    reader = VideoReader(path, size=config.size, start=config.start, stride=config.stride,
                         max_frames=config.frames)
    size = _working_size(reader.info.height, reader.info.width, config.size)
    if size is not None and config.size is None:
        reader = VideoReader(path, size=size, start=config.start, stride=config.stride, max_frames=config.frames)
    described = reader.describe()
    return _Source(iter(reader), reader.fps, reader.fps_rational, reader.size, reader.expected_frames(),
                   {"path": str(path), "sha1": file_sha1(path), "start_frame": config.start,
                    "stride": config.stride, "crop": described["resize"]})


def _windows(frames: Iterator[np.ndarray], window: int, overlap: int
             ) -> Iterator[tuple[int, np.ndarray, bool]]:
    """Yield (index of the first frame, frames (n, H, W, 3), continues) windows overlapping by `overlap`
    frames. A scene cut ends a window early and the next starts at the cut with ``continues=False`` (no
    overlap, nothing is carried across a cut)."""
    detector = CutDetector()
    buffer: list[np.ndarray] = []
    start, fresh, continues = 0, 0, False
    for frame in frames:
        if detector.is_cut(frame) and fresh:
            yield start, np.stack(buffer), continues
            start, buffer, fresh, continues = start + len(buffer), [], 0, False
        buffer.append(frame)
        fresh += 1
        if len(buffer) == window:
            yield start, np.stack(buffer), continues
            start += window - overlap
            buffer = buffer[window - overlap:]
            fresh, continues = 0, True
    if fresh:
        yield start, np.stack(buffer), continues


# ------------------------------------------------------------------------------------------------ decomposer


class Decomposer:
    """Runs the configured backends over a video, window by window, into a sink."""

    def __init__(self, config: SplitConfig):
        self.config = config
        options = config.options_for
        self.segmenter = get_backend("segmenter", config.segmenter,
                                     **{"all_objects": config.all_objects, **options(config.segmenter)})
        self.refiner = get_backend("refiner", config.refiner, **options(config.refiner)) if config.refiner else None
        self.restorer = get_backend("restorer", config.restorer, **options(config.restorer))
        self.matting = get_backend("matting", config.matting, **options(config.matting))
        self.captioner = (get_backend("captioner", config.captioner, **options(config.captioner))
                          if config.caption is None else None)
        self.pick = config.pick()
        if self.pick is not None and not self.segmenter.can_pick:
            raise OptionError(f"segmenter {config.segmenter!r} cannot choose a subject by point or box "
                              f"(the motion segmenter can)")

    def backends(self) -> dict:
        segmenter = {**self.segmenter.describe_config(), **({"pick": self.pick.record()} if self.pick else {})}
        record = {"segmenter": segmenter, "restorer": self.restorer.describe_config(),
                  "matting": self.matting.describe_config(),
                  "captioner": self.captioner.describe_config() if self.captioner else {"name": "given"}}
        if self.refiner is not None:
            record["refiner"] = self.refiner.describe_config()
        return record

    def open(self, source) -> _Source:
        """Open `source` (a path or a `Video`) for reading at the working size; checks it can be split."""
        opened = _open_source(source, self.config)
        name = opened.provenance["path"] or "video"
        if opened.expected < MIN_FRAMES:
            raise MediaError(f"{name}: {opened.expected} frame(s) to split; splitting needs at least {MIN_FRAMES}")
        height, width = opened.size
        if min(height, width) < MIN_SIDE:
            raise MediaError(f"{name}: {width}x{height} is too small to split "
                             f"(at least {MIN_SIDE}x{MIN_SIDE})")
        window = min(self.config.window, opened.expected)
        check_memory(window * height * width * SPLIT_BYTES_PER_PIXEL,
                     f"{name}: splitting {height}x{width} in windows of {window} frames")
        return opened

    def run(self, opened: _Source, sink) -> dict:
        """Split an opened source into `sink` (anything with ``write(frame, alpha, foreground, background)``).

        Returns the clip's meta: source, backends, seconds per stage, filters, caption and diagnostics.
        Raises `NoSubjectError` when no window finds a moving subject.
        """
        config = self.config
        seconds = dict.fromkeys(("read", "segment", "refine", "restore", "matting", "caption", "write"), 0.0)

        caption = " ".join(config.caption.split()) if config.caption is not None else None
        found_any, objects, picked_frame = False, [], None
        held: tuple[np.ndarray, ...] | None = None  # the previous window's overlap: frames, alpha, plate, effects
        written = 0
        alpha_sum, present = 0.0, 0
        camera = CameraChain()  # each frame's map to the first (layers.json "camera")

        def emit(frame, alpha, background, effects):
            nonlocal written, alpha_sum, present
            started = time.perf_counter()
            sink.write(frame, alpha, premultiply(frame, alpha), background,
                       **({"effects": effects} if config.effects else {}))
            written += 1
            alpha_sum += float(alpha.mean(dtype=np.float64))
            present += int(present_frames(alpha[None])[0])
            seconds["write"] += time.perf_counter() - started

        windows = _windows(opened.frames, config.window, config.overlap)
        while True:
            mark = time.perf_counter()
            item = next(windows, None)
            seconds["read"] += time.perf_counter() - mark
            if item is None:
                break
            start, frames, continues = item
            if not continues and held is not None:  # a cut: the previous shot's held frames are final
                for i in range(len(held[0])):
                    emit(*(column[i] for column in held))
                held = None
            overlap = min(config.overlap, len(frames)) if held is not None else 0
            prior = None
            if held is not None or (self.pick is not None and start > 0):
                # After the first window a pick is followed through the prior alone (empty after a cut).
                prior = np.zeros(frames.shape[:3], np.float32)
                prior[:overlap] = held[1][:overlap] if held is not None else 0
            clip = SplitClip(frames, opened.fps)
            camera.add(start, clip.camera if len(frames) > 1 else None, len(frames))
            segmentation = self._segment(clip, prior, seconds) if len(frames) >= MIN_FRAMES else _nothing(clip)
            if self.pick is not None and start == 0:
                picked_frame = self._check_pick(segmentation, opened, len(frames))
            found_any |= segmentation.found
            objects.append(segmentation.info.get("objects"))
            alpha, effects = segmentation.alpha, np.ones(frames.shape[:3], np.float32)
            background = frames.copy()
            if segmentation.found:
                background, alpha, effects = self._restore_and_matte(clip, segmentation.alpha, seconds)
            if caption is None and segmentation.found:
                mark = time.perf_counter()
                caption = self.captioner.describe(clip, alpha)
                seconds["caption"] += time.perf_counter() - mark
            for i in range(overlap):  # cross-fade the frames both windows saw
                weight = (i + 1) / (overlap + 1)
                blended_alpha = ((1 - weight) * held[1][i] + weight * alpha[i]).astype(np.float32)
                blended_background = np.rint((1 - weight) * held[2][i] + weight * background[i]).astype(np.uint8)
                blended_effects = ((1 - weight) * held[3][i] + weight * effects[i]).astype(np.float32)
                emit(frames[i], blended_alpha, blended_background, blended_effects)
            keep = config.overlap if len(frames) == config.window else 0
            for i in range(overlap, len(frames) - keep):
                emit(frames[i], alpha[i], background[i], effects[i])
            held = tuple(column[len(frames) - keep:] for column in (frames, alpha, background, effects))
        if held is not None:
            for i in range(len(held[0])):
                emit(*(column[i] for column in held))

        name = opened.provenance["path"] or "video"
        if written < MIN_FRAMES:
            raise MediaError(f"{name}: {written} frame(s); splitting needs at least {MIN_FRAMES}")
        if not found_any:
            raise NoSubjectError(f"{name}: no moving subject found (static scene, or nothing moves on its own)")
        fg_ratio = alpha_sum / max(written, 1)
        subject = ({"chosen_by": "motion"} if self.pick is None
                   else {"chosen_by": "point" if self.pick.point is not None else "box", **self.pick.record(),
                         "found_at_frame": picked_frame})
        return {"source": opened.provenance, "backends": self.backends(),
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
                "filters": verdict(found_any, fg_ratio, present / max(written, 1)),
                "caption": caption or "", "fps": opened.fps, "fps_rational": opened.fps_rational,
                "camera": camera.record()[:written],
                "split": {"windows": len(objects), "objects_per_window": objects, "subject": subject,
                          "config": _config_record(config)}}

    def _check_pick(self, segmentation: Segmentation, opened: _Source, count: int) -> int | None:
        """The first window's answer to the pick: the frame (of the clip) where the picked mover was found, or
        `NoSubjectError` naming the pick when it hit no mover."""
        if segmentation.found:
            return segmentation.info.get("picked_frame")
        name = opened.provenance["path"] or "video"
        raise NoSubjectError(f"{name}: nothing moves at the {self.pick.describe()} in the first "
                             f"{min(count, PICK_SEARCH)} frames (pick a point on the moving subject)",
                             reason="nothing moves at the pick")

    def _restore_and_matte(self, clip: SplitClip, coarse: np.ndarray, seconds: dict
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(background, alpha, effects) of a window with a subject: the restorer on the segmenter's matte
        `coarse`, then the matting stage (`decompose.matting`). A matte that grew beyond the restored hole gets
        the scene plate there too. Without effects (Layers version 1) the rule keeps the segmenter's matte (the
        shadow in it) and every backend's effects are dropped."""
        mark = time.perf_counter()
        no_effects = np.ones(coarse.shape, np.float32)
        if not self.config.effects and self.matting.effects_only:  # version 1: the segmenter's matte as it is
            background = self.restorer.restore(clip, coarse)
            seconds["restore"] += time.perf_counter() - mark
            return background, coarse, no_effects
        scene = None
        if not self.matting.needs_scene:
            background = self.restorer.restore(clip, coarse)
        elif hasattr(self.restorer, "restore_with_scene"):
            background, scene = self.restorer.restore_with_scene(clip, coarse)
        else:
            background = self.restorer.restore(clip, coarse)
            if not self.matting.scene_optional:
                scene = get_backend("restorer", "propagate").restore_with_scene(clip, coarse)[1]
        seconds["restore"] += time.perf_counter() - mark
        mark = time.perf_counter()
        alpha, effects = self.matting.separate(clip, coarse, background, scene)
        if not self.config.effects:
            effects = no_effects
        if scene is not None:
            background = extend_hole(background, scene, coarse, alpha, effects)
        seconds["matting"] += time.perf_counter() - mark
        return background, alpha, effects

    def _segment(self, clip: SplitClip, prior: np.ndarray | None, seconds: dict) -> Segmentation:
        mark = time.perf_counter()
        picking = {"pick": self.pick} if self.pick is not None else {}
        segmentation = self.segmenter.segment(clip, prior=prior, **picking)
        seconds["segment"] += time.perf_counter() - mark
        if self.refiner is not None and segmentation.found:
            mark = time.perf_counter()
            segmentation = self.refiner.refine(clip, segmentation)
            seconds["refine"] += time.perf_counter() - mark
        return segmentation


def _nothing(clip: SplitClip) -> Segmentation:
    """The segmentation of a shot too short to split (a few frames between two cuts): no subject."""
    alpha = np.zeros(clip.frames.shape[:3], np.float32)
    boxes = np.full((clip.num_frames, 4), np.nan, np.float32)
    return Segmentation(alpha, boxes, [np.zeros((0, 2), np.float32)] * clip.num_frames, found=False,
                        reason="shot too short", info={"objects": 0})


def _config_record(config: SplitConfig) -> dict:
    record = asdict(config)
    record["backend_options"] = {name: sorted(options) for name, options in config.backend_options.items()}
    return record  # option *names* only: values may hold keys or private paths


# --------------------------------------------------------------------------------------------------------- API


class _Collector:
    """A sink that keeps every frame in memory (for `split`)."""

    def __init__(self):
        self.columns: tuple[list, ...] = ([], [], [], [])
        self.effects: list = []

    def write(self, frame, alpha, foreground, background, effects=None):
        for column, value in zip(self.columns, (frame, alpha, foreground, background), strict=True):
            column.append(value)
        if effects is not None:
            self.effects.append(effects)


def split_config(options: dict) -> SplitConfig:
    """`SplitConfig(**options)`, with a one-line error for an option it does not have."""
    unknown = sorted(set(options) - {item.name for item in fields(SplitConfig)})
    if unknown:
        raise OptionError(f"split: unknown option(s) {', '.join(unknown)} (see SplitConfig)")
    return SplitConfig(**options)


def split(source: str | os.PathLike | Video, **options) -> Layers:
    """Split a video (a path or a `Video`) into `Layers` in memory. Options: the fields of `SplitConfig`.

    Meta holds ``source`` (path, sha1, start_frame, stride, crop), ``backends``, ``seconds`` per stage and
    ``filters`` (the paper's filters: passed, reason, fg_ratio, presence). Raises `NoSubjectError` when nothing
    moves on its own. For long videos prefer `split_to_folder`, which streams to disk.
    """
    decomposer = Decomposer(split_config(options))
    collector = _Collector()
    meta = decomposer.run(decomposer.open(source), collector)
    frames, alpha, foreground, background = (np.stack(column) for column in collector.columns)
    caption = meta.pop("caption")
    effects = np.stack(collector.effects) if collector.effects else None
    return Layers(frames, alpha, foreground, background, meta.pop("fps"), caption,
                  {**meta, "fps_rational": meta.pop("fps_rational")}, effects=effects)


def split_to_folder(source: str | os.PathLike | Video, directory: str | os.PathLike, **options) -> dict:
    """Split a video straight into a Layers folder, streaming (memory bounded by one window). Returns the meta.

    Nothing is left at `directory` when splitting fails (including `NoSubjectError`).
    """
    decomposer = Decomposer(split_config(options))
    check_output(directory, [source if isinstance(source, (str, os.PathLike)) else None], kind="folder")
    opened = decomposer.open(source)
    with LayersWriter(directory, opened.fps_rational) as writer:
        meta = decomposer.run(opened, writer)
        started = time.perf_counter()
        caption = meta.pop("caption")
        fps_rational = meta.pop("fps_rational")
        fps = meta.pop("fps")
        writer.close(caption, {**meta, "fps_rational": fps_rational})
        meta["seconds"]["write"] = round(meta["seconds"]["write"] + time.perf_counter() - started, 3)
    return {**meta, "caption": caption, "path": str(directory), "num_frames": writer.num_frames, "fps": fps,
            "fps_rational": fps_rational}
