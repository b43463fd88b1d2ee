"""The web app's work, without the web: check an upload, split a foreground, compose, and run either in a
child process that a Cancel can stop.

Everything a session makes goes into its own folder under the app's working folder (`Workspace`). Split and
compose run in a spawned process (`JobRunner`): a thread could not be stopped, and a forked copy of a server
with threads and torch is not safe. The child reports progress as (fraction, text) and its result or a one-line
error through a queue.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import OptionError, SplitMergeError

APP_METHODS = ("stm", "harmonized-copy-paste", "copy-paste")


@dataclass
class AppLimits:
    """What the app accepts and how much of it it uses.

    Attributes:
        max_upload_mb: the largest upload, MB (the server refuses bigger files before they reach a handler).
        max_seconds: the longest video accepted, s.
        frames: frames used from each clip (from its start).
        split_height: working height of the split, px (the video's own when smaller).
        max_height: backgrounds higher than this are scaled down to it, px.
        steps: sampling steps for stm.
    """

    max_upload_mb: float = 200.0
    max_seconds: float = 60.0
    frames: int = 49
    split_height: int = 240
    max_height: int = 480
    steps: int = 20

    def __post_init__(self):
        if not self.max_upload_mb > 0 or not self.max_seconds > 0:
            raise OptionError("upload limits must be above 0")
        if not 8 <= self.frames <= 400:
            raise OptionError(f"frames {self.frames}: expected 8 to 400")
        if not 1 <= self.steps <= 1000:
            raise OptionError(f"steps {self.steps}: expected 1 to 1000")


def check_video(path: str | Path, limits: AppLimits, role: str) -> dict:
    """Probe an uploaded video; a one-line `SplitMergeError` naming `role` ("foreground", "background") when it
    is not a readable video, too big, too long or too short. Returns the probe record."""
    from ..video.io import probe

    path = Path(path)
    if not path.is_file():
        raise OptionError(f"{role}: no video given")
    megabytes = path.stat().st_size / 2 ** 20
    if megabytes > limits.max_upload_mb:
        raise OptionError(f"{role} video is {megabytes:.0f} MB; the limit is {limits.max_upload_mb:g} MB")
    try:
        info = probe(path).to_dict()
    except SplitMergeError as error:
        raise OptionError(f"{role} video {path.name}: {' '.join(str(error).split())}") from None
    if info["duration"] and info["duration"] > limits.max_seconds:
        raise OptionError(f"{role} video is {info['duration']:.1f} s long; the limit is {limits.max_seconds:g} s")
    if info["frames"] < 8:
        raise OptionError(f"{role} video has {info['frames']} frames; at least 8 are needed")
    return info


def split_job(video: str, folder: str, limits: AppLimits, progress: Callable[[float, str], None],
              point: tuple[float, float] | None = None) -> dict:
    """Split the first `limits.frames` frames of `video` into ``folder/layers``; `point` (x, y fractions of the
    first frame) picks the subject, else the main mover. Returns the caption, the
    matte drawn over the video (``matte_overlay.mp4``), the Layers preview (source | matte | foreground |
    background) and the filters' verdict."""
    from ..decompose.pipeline import split_to_folder
    from ..video.geometry import capped_size
    from ..video.io import probe, write_video
    from ..video.layers import Layers, Video
    from ..video.preview import matte_overlay

    info = probe(video)
    size = capped_size(info.height, info.width, limits.split_height) or (info.height, info.width)
    progress(0.1, f"splitting {min(limits.frames, info.frames)} frames at {size[1]}x{size[0]}")
    target = Path(folder) / "layers"
    meta = split_to_folder(video, target, frames=limits.frames, size=size,
                           point=None if point is None else list(point))
    progress(0.9, "drawing the matte over the video")
    layers = Layers.load(target)
    overlay = np.stack([matte_overlay(frame, alpha) for frame, alpha in zip(layers.frames, layers.alpha,
                                                                             strict=True)])
    overlay_path = write_video(Path(folder) / "matte_overlay.mp4", Video(overlay, layers.fps))
    progress(1.0, "split")
    return {"layers": str(target), "overlay": str(overlay_path), "preview": str(target / "preview.mp4"),
            "caption": meta["caption"], "filters": meta["filters"]}


OUTLINE = (0, 255, 255)   # what passed in front of the subject, in the preview


def outlined(frames: np.ndarray, mattes: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8: `frames` with the outline of each frame's matte (> 0.5) of `mattes` (T, H, W) drawn."""
    import cv2

    drawn = frames.copy()
    for frame, matte in zip(drawn, mattes, strict=True):
        contours, _ = cv2.findContours((matte > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(frame, contours, -1, OUTLINE, 1)
    return drawn


def compose_job(layers: str, background: str, folder: str, method: str, position, scale, limits: AppLimits,
                progress: Callable[[float, str], None], prompt: str | None = None, placement: str = "model",
                seed: int = 0, anchor: str = "auto", occlusion: str = "auto") -> dict:
    """Compose the Layers folder `layers` into the video `background` (its first `limits.frames` frames) with
    `method`; `position` (x, y) fractions or None (the subject starts where it was in its own frame), `scale`,
    `placement` (``model``: stm may move it from there; ``given``: it stays), `prompt` (default: the caption),
    `anchor` and `occlusion` (as `compose`: held on the scene when the camera moves, nearer movers in front).
    Writes into `folder`: ``result.mp4``, ``side_by_side.mp4`` (subject source | background | result, what
    passed in front of the subject outlined),
    ``result_layers.zip`` (the result as a Layers folder) and returns their paths with the paper's metrics."""
    from ..eval.features import paper_metrics
    from ..merge.compose import compose, plan_placement
    from ..video.geometry import capped_size
    from ..video.io import probe, read_video, write_video
    from ..video.layers import Layers, Video
    from ..video.preview import side_by_side
    from ..video.transforms import place

    if method not in APP_METHODS:
        raise OptionError(f"method {method!r}: expected one of {', '.join(APP_METHODS)}")
    out = Path(folder)
    progress(0.05, "reading the background")
    info = probe(background)
    plate = read_video(background, max_frames=limits.frames,
                       size=capped_size(info.height, info.width, limits.max_height))
    height = plate.frames.shape[1]
    subject = Layers.load(layers)
    progress(0.15, f"composing with {method}")
    result = compose(fg=subject, background=plate, prompt=prompt, method=method, position=position, scale=scale,
                     steps=limits.steps, seed=seed, placement=placement, anchor=anchor, occlusion=occlusion)
    count = len(result.frames)
    progress(0.75, "writing the result")
    result_path = write_video(out / "result.mp4", Video(result.frames, result.fps))
    shown = result.frames if result.occluders is None else outlined(result.frames, result.occluders)
    label = f"result ({method})" + ("" if result.occluders is None else ", in front: outlined")
    panels = [side_by_side([subject.frames[t], plate.frames[t], shown[t]], ["subject", "background", label],
                           height=min(height, 240)) for t in range(count)]
    side_path = write_video(out / "side_by_side.mp4", Video(np.stack(panels), result.fps))
    layered = out / "result_layers"
    archive = out / "result_layers.zip"
    if result.alpha is not None:
        result.layers().save(layered)
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(layered.iterdir()):
                bundle.write(path, f"result_layers/{path.name}")
    progress(0.9, "scoring")
    plan = plan_placement(count, position, scale)  # the start compose placed the subject at
    placed_fg, placed_alpha = place(subject.foreground[:count], subject.alpha[:count], result.frames.shape[1:3],
                                    position=plan.position, scale=plan.scale)
    metrics = {}
    if result.alpha is not None:
        metrics = paper_metrics(placed_fg, placed_alpha, plate.frames[:count], result.frames, result.alpha,
                                prompt=prompt or subject.caption)
    progress(1.0, "done")
    return {"result": str(result_path), "side_by_side": str(side_path), "anchor": result.meta["anchor"],
            "occlusion": result.meta["occlusion"],
            "layers_zip": str(archive) if archive.exists() else None,
            "metrics": {key: round(float(value), 3) for key, value in metrics.items() if value is not None},
            "mirrored": result.meta.get("mirrored"), "frames": count}


def _child(function: Callable, kwargs: dict, channel) -> None:
    """Runs in the spawned process: the job, its progress and its outcome on `channel`."""
    try:
        outcome = function(**kwargs, progress=lambda fraction, text: channel.put(("progress", fraction, text)))
        channel.put(("done", outcome))
    except SplitMergeError as error:
        channel.put(("error", " ".join(str(error).split())))
    except Exception as error:  # noqa: BLE001 (the app shows it instead of a dead worker)
        channel.put(("error", f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"))


class JobRunner:
    """At most one job per session, each in its own spawned process; `cancel` ends it at once."""

    def __init__(self):
        self._context = multiprocessing.get_context("spawn")
        self._jobs: dict[str, multiprocessing.Process] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def busy(self, session: str) -> bool:
        with self._lock:
            process = self._jobs.get(session)
            return process is not None and process.is_alive()

    def run(self, session: str, function: Callable, kwargs: dict, poll: float = 0.25
            ) -> Iterator[tuple[str, object, object]]:
        """Start `function(**kwargs, progress=...)` for `session` and yield ("progress", fraction, text) while it
        runs, then ("done", result, None), ("error", message, None) or ("cancelled", None, None)."""
        channel = self._context.Queue()
        process = self._context.Process(target=_child, args=(function, kwargs, channel), daemon=True)
        with self._lock:
            running = self._jobs.get(session)
            if running is not None and running.is_alive():
                raise OptionError("a job is already running in this session: wait for it or cancel it")
            self._cancelled.discard(session)
            self._jobs[session] = process
            process.start()
        try:
            while True:
                try:
                    message = channel.get(timeout=poll)
                except queue_module.Empty:
                    if not process.is_alive():
                        if session in self._cancelled:
                            yield "cancelled", None, None
                        else:
                            yield "error", f"the worker stopped (exit code {process.exitcode})", None
                        return
                    continue
                if message[0] == "progress":
                    yield "progress", message[1], message[2]
                else:
                    yield message[0], message[1], None
                    return
        finally:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)
            with self._lock:
                if self._jobs.get(session) is process:
                    del self._jobs[session]

    def cancel(self, session: str) -> bool:
        """Stop the session's job; True when one was running."""
        with self._lock:
            process = self._jobs.get(session)
            if process is None or not process.is_alive():
                return False
            self._cancelled.add(session)
            process.terminate()
            return True

    def stop_all(self) -> None:
        for session in list(self._jobs):
            self.cancel(session)


class Workspace:
    """The app's working folder: ``uploads/`` (the web server's temporary files) and ``sessions/<id>/<job>``
    for each session's outputs. Nothing is written outside it; `forget` and `close` remove what a session or
    the app made."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.uploads = self.root / "uploads"
        self.sessions = self.root / "sessions"
        for folder in (self.uploads, self.sessions):
            folder.mkdir(parents=True, exist_ok=True)

    def job_folder(self, session: str, kind: str) -> Path:
        """A new folder for one job of `session` (a previous job's files stay until the session ends)."""
        safe = "".join(c for c in session if c.isalnum())[:64] or "anonymous"
        folder = self.sessions / safe / f"{time.strftime('%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        return folder

    def forget(self, session: str) -> None:
        """Remove everything `session` made."""
        safe = "".join(c for c in session if c.isalnum())[:64] or "anonymous"
        shutil.rmtree(self.sessions / safe, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.sessions, ignore_errors=True)
        shutil.rmtree(self.uploads, ignore_errors=True)
