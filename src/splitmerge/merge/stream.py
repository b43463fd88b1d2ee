"""`compose` from files to a file, streamed: memory stays that of a few chunks of frames however long the clip.

What `splitmerge compose` runs for ``copy-paste`` and for ``stm`` with a warp Composer (the bundled one); the
result is the same, frame for frame, as `sm.compose` in memory followed by `Composite.save`. Other methods need
the whole clip (harmonized copy-paste's statistics, generative models) and go through `sm.compose`.

Passes over the inputs, each reading `chunk` frames at a time:
0. with a world anchor (`merge.anchor`), the background's camera;
1. each subject's matte: is it empty, and its box over the clip (the placement anchor, `place(center=...)`; in
   its first frame's coordinates when world-anchored);
2. (stm, per subject) its placed matte at the Composer's size: is it inside the frame, and its centres for the
   mirror rule; then the map, window by window, from a rolling buffer of the Composer-size frames (the
   background with the earlier subjects already rendered, as in memory);
3. the background and every subject at full resolution: placed, warped or pasted in order, what passes in front
   put back (`merge.occlusion`; with ``auto`` the background's movers are split first, into a temporary folder
   beside the output that is removed at the end), written.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import MediaError, OptionError
from ..video.geometry import resize_frames
from ..video.io import VideoReader, VideoWriter, iter_chunks, probe
from ..video.layers import LayersStream, LayersWriter, composite, uncomposite
from ..video.rates import frame_rate
from ..video.transforms import place
from .anchor import carried_anchor, check_anchor, placing, plan_anchoring
from .compose import (ComposeInputs, Placement, check_compose_outputs, check_options, check_sampling, compose_meta,
                      empty_matte, placed_outside, plan_placement)
from .occlusion import (BackgroundMovers, check_occlusion, in_front, occlude, occluded_frames, occluder_chunks,
                        occlusion_record, subjects_for_order)
from .orientation import matte_centres

STREAMED = ("copy-paste", "stm")


def streamable(method: str, options: dict) -> bool:
    """Whether `compose_to_file` can stream `method` (stm: only a warp Composer)."""
    if method == "copy-paste":
        return True
    if method == "stm":
        from .stm import stm_model

        return stm_model(options)[0].config.output == "warp"
    return False


def _frames(path, count: int, chunk: int) -> Iterator[np.ndarray]:
    """The first `count` frames of a video as (n, H, W, 3) uint8 chunks."""
    return iter_chunks(VideoReader(path, max_frames=count), chunk)


def _placed(subject: LayersStream, placing: dict, plan: Placement, size, count: int, chunk: int,
            colour: bool = True) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """(frames, placed foreground (n, H', W', 3) uint8, placed alpha (n, H', W')) chunks of one subject;
    `placing`: `place`'s keywords for the whole clip (`anchor.placing`: its ``center``; with a world anchor the
    per-frame ``camera`` and ``source_camera``, sliced to each chunk)."""
    start = 0
    for foreground, alpha in subject.chunks(count, chunk, colour):
        frames = slice(start, start + len(alpha))
        if foreground is None:
            foreground = np.zeros((*alpha.shape, 3), np.uint8)
        position = plan.position
        if position is not None and position.ndim == 2:
            position = position[frames]
        scale = plan.scale if np.ndim(plan.scale) == 0 else np.asarray(plan.scale)[frames]
        keywords = {key: value[frames] if key != "center" and value is not None else value
                    for key, value in placing.items()}
        yield (frames, *place(foreground, alpha, size, position=position, scale=scale, **keywords))
        start += len(alpha)


def compose_to_file(fg, background, output, *, method: str = "stm", model: str = "default",
                    prompt: str | None = None, seed: int = 0, steps: int | None = None,
                    guidance: float | None = None, position=None, scale=None, trajectory=None,
                    placement: str = "auto", anchor: str = "auto", occlusion: str = "auto", occluder=None,
                    layers_out=None, chunk: int = 16, **options) -> dict:
    """Compose Layers folder(s) `fg` into the video file `background`, writing the video `output` (and with
    `layers_out` the result as a Layers folder), streamed. Options as `sm.compose`; `method` one of
    `STREAMED` (see `streamable`). Returns the result's meta (as `Composite.meta`)."""
    check_options(method, options)
    check_sampling(seed, steps, guidance)
    if method not in STREAMED:
        raise OptionError(f"method {method!r}: not streamed (use sm.compose)")
    folders = list(fg) if isinstance(fg, (list, tuple)) else [fg]
    if not folders:
        raise OptionError("fg: no foreground layer given")
    check_compose_outputs(folders, background, output, layers_out, occluder)
    subjects = [LayersStream(folder) for folder in folders]
    info = probe(background)
    count = min([info.frames] + [subject.num_frames for subject in subjects])
    size = (info.height, info.width)
    plan = plan_placement(count, position, scale, trajectory, placement)
    check_anchor(anchor)
    check_occlusion(occlusion)
    text = prompt if prompt is not None else " ".join(s.caption for s in subjects if s.caption)
    inputs = ComposeInputs(np.empty((0, *size, 3), np.uint8), [], info.fps, text, seed, steps, guidance,
                           {"model": model, "placement": plan.by, **options})

    # Pass 0 (a world anchor): the background's camera.
    anchoring = plan_anchoring(anchor, lambda: _frames(background, count, chunk), size, count, str(background))
    placings = [_placing(anchoring, subject, index, count, chunk) for index, subject in enumerate(subjects)]  # pass 1

    maps, meta, drawn = [], {}, {}
    if method == "stm":
        from .stm import drawn_options, held_map, stm_model, warp_meta

        composer, path = stm_model(inputs.options)
        inputs.carried = [carried_anchor(keywords, plan.position, (subject.height, subject.width), size, count)
                          for subject, keywords in zip(subjects, placings, strict=True)]
        job = StreamJob(composer, inputs, subjects, placings, plan, size, count, chunk, background)
        for index in range(len(subjects)):  # each over the background with the ones before it rendered
            maps.append(held_map(_sample_map(job, index, maps), inputs, index, size))
        meta = warp_meta(composer, path, count, inputs, [clip_map.mirrored for clip_map in maps])
        drawn = drawn_options(composer.config)
    else:
        for index, subject in enumerate(subjects):
            if not any(bool((alpha > 0).any()) for _, _, alpha in
                       _placed(subject, placings[index], plan, size, count, chunk, colour=False)):
                raise placed_outside(index, size, plan)

    record = _write_result(output, layers_out, background, info, subjects, placings, plan, size, count, chunk,
                           maps, drawn, occlusion, occluder,
                           lambda occlusion_meta: {"compose": {**compose_meta(method, text, seed, count, plan,
                                                                              anchoring), **occlusion_meta, **meta}},
                           text)
    return {**compose_meta(method, text, seed, count, plan, anchoring), **record, **meta, "streamed": True}


def _placing(anchoring, subject: LayersStream, index: int, count: int, chunk: int) -> dict:
    """Pass 1 for subject `index`: its `place` keywords (`anchor.placing`) from its mattes, read a chunk at a time;
    an empty matte is a one-line error."""
    seen = []

    def mattes():
        start = 0
        for _, alpha in subject.chunks(count, chunk, colour=False):
            seen.append(bool((alpha > 0).any()))
            yield start, alpha
            start += len(alpha)

    keywords = placing(anchoring, subject.camera, subject.num_frames, (subject.height, subject.width), count,
                       mattes(), f"fg {index + 1} camera")
    if not any(seen):
        raise empty_matte(index)
    return keywords


def _write_result(output, layers_out, background, info, subjects, placings, plan, size, count, chunk, maps, drawn,
                  occlusion, occluder, layers_meta, text) -> dict:
    """Pass 3: the background and every subject at full resolution, placed, warped by its map (stm) or pasted, in
    order, what passes in front put back over them (with ``auto`` occlusion the background's movers are split first
    into a temporary folder beside the output, removed at the end), written to `output` (and `layers_out`, its
    meta from `layers_meta(occlusion record)`). Returns the occlusion record."""
    rate = frame_rate(info.fps)
    written, occluded = 0, 0
    layers = LayersWriter(layers_out, rate) if layers_out else None
    movers = None
    try:
        if occluder is None and occlusion == "auto":
            movers = BackgroundMovers(background, count, Path(output).parent)
        fronts = (occluder_chunks(occluder, size, count, chunk) if occluder is not None else
                  movers.chunks(size, count, chunk) if movers is not None else repeat(None))
        with VideoWriter(output, rate) as writer:
            streams = [_placed(s, placings[i], plan, size, count, chunk) for i, s in enumerate(subjects)]
            for plate, front, *placed in zip(_frames(background, count, chunk), fronts, *streams, strict=False):
                result, union, shading = _render(plate, placed, maps, drawn)
                if front is not None:
                    if occluder is None:
                        front = in_front(front, subjects_for_order(union, [alpha for _, _, alpha in placed]))
                    result, union, shading = occlude(result, union, plate, shading, front)
                    occluded += occluded_frames(front)
                for t in range(len(plate)):
                    writer.write(result[t])
                    if layers is not None:
                        gain = None if shading is None else shading[t]
                        layers.write(result[t], union[t], uncomposite(result[t], union[t], plate[t], gain), plate[t],
                                     gain)
                written += len(plate)
            if written < count:
                raise MediaError(f"{background}: ended after {written} frames; its header says {info.frames}")
        record = {"occlusion": occlusion_record(occlusion, occluder, occluded, count)}
        if layers is not None:
            layers.close(text, layers_meta(record))
            layers = None
    finally:
        if layers is not None:
            layers.abort()
        if movers is not None:
            movers.close()
    return record


def _render(plate: np.ndarray, placed: list, maps: list, drawn: dict
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One chunk: the subjects (frames, placed fg, placed alpha) over `plate` in order, warped by their `maps`
    (stm `ClipMap`s; `drawn`: what the Composer draws beside its warp, `stm.drawn_options`, read only with
    maps) or pasted (copy-paste). Returns (result (n, H, W, 3) uint8, union matte (n, H, W), the effects gain
    (n, H, W) or None without effects)."""
    from .stm import RenderedStack

    stack = RenderedStack(plate, bool(maps) and drawn["effects"])
    for index, (frames, foreground, alpha) in enumerate(placed):
        if maps:
            stack.warped(maps[index].frames(frames), foreground, alpha, drawn)
        else:
            stack.add(composite(foreground, alpha, stack.result), alpha)
    return stack.result, stack.union, stack.shading


@dataclass
class StreamJob:
    """What every pass of a streamed stm composition reads: the Composer, the inputs, the subjects' folders
    with their `place` keywords (`anchor.placing`) and placement plan, the output size (H, W), the frame count,
    the chunk, the background video's path."""

    composer: object
    inputs: ComposeInputs
    subjects: list
    placings: list
    plan: Placement
    size: tuple[int, int]
    count: int
    chunk: int
    background: object

    def placed(self, index: int, colour: bool = True):
        """Subject `index` placed, chunk by chunk (`_placed`)."""
        return _placed(self.subjects[index], self.placings[index], self.plan, self.size, self.count, self.chunk,
                       colour)


def _sample_map(job: StreamJob, index: int, maps: list):
    """Pass 2 for subject `index`: its mirror choice, then its map window by window (`stm.WarpMap`) over the
    Composer-size frames of it and of the background with subjects 0..index-1 rendered by their `maps`."""
    from .stm import WarpMap, drawn_options, mirror_choice, mirror_policy

    composer, inputs, count = job.composer, job.inputs, job.count
    small_size = tuple(composer.config.sample_size)
    centres, inside = [], False
    for _, _, alpha in job.placed(index, colour=False):
        inside = inside or bool((alpha > 0).any())
        centres.append(matte_centres(resize_frames(alpha, small_size)))
    if not inside:
        raise placed_outside(index, job.size, job.plan)
    forced = mirror_choice(mirror_policy(inputs.options, composer), job.plan.by, inputs.prompt, np.concatenate(centres),
                           small_size[1])
    warp = WarpMap(composer, count, inputs, forced)
    buffer: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    window = 0
    streams = [job.placed(i) for i in range(index + 1)]
    drawn = drawn_options(composer.config)
    for plate, *placed in zip(_frames(job.background, count, job.chunk), *streams, strict=False):
        earlier, (frames, foreground, alpha) = placed[:-1], placed[-1]
        behind = _render(plate, earlier, maps, drawn)[0] if earlier else plate
        for t, (fg, a, bg) in enumerate(zip(resize_frames(foreground, small_size), resize_frames(alpha, small_size),
                                            resize_frames(behind, small_size), strict=True)):
            buffer[frames.start + t] = (fg, a, bg)
        last, windows = frames.stop - 1, warp.windows
        while window < len(windows) and windows.starts[window] + windows.kept(window) - 1 <= last:
            picks = windows.picks(window)
            fg, a, bg = (np.stack([buffer[p][k] for p in picks]) for k in range(3))
            warp.sample(window, fg, a, bg)
            window += 1
            keep_from = windows.starts[window] if window < len(windows) else count
            for frame in [f for f in buffer if f < keep_from]:
                del buffer[frame]
    if window < len(warp.windows):
        raise MediaError(f"{job.background}: ended before frame {count}")
    return warp.result()
