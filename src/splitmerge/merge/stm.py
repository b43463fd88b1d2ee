"""The ``stm`` composition method: the trained Composer behind `sm.compose`.

The Composer runs at the clip length and size it was trained at (``sample_frames``, ``sample_size`` in its
``composer.json``): the inputs are resized to that size and cut into windows of that many frames overlapping
by a quarter window (the last one ends on the last frame; a clip shorter than a window is padded by repeating
its final frame); each window is sampled, the overlaps are cross-faded, and the result is resized back.

A ``warp`` Composer (the CPU presets) decides at its training size only *where and how* the subject goes: its
map (per-frame zoom, shift, colour gains, and one mirror choice for the clip; the windows' maps cross-faded) is
applied to the subject layer at the background's own resolution, so the subject keeps its full-resolution pixels
and the background is exact outside the moved matte (``preserve_background`` changes nothing there).
Which way each subject faces follows option ``mirror``: ``caption`` mirrors it when the prompt's stated
direction of motion disagrees with the layer's own (`merge.orientation`), ``model`` lets the Composer choose at
its first sampling step, ``keep`` never mirrors; ``auto`` (default) is ``model`` for a Composer with a scene
reader (it learnt the choice from the scene, merge/reader.py) and ``caption`` for one without;
``placement="given"`` keeps orientation, place and size, so only the colours are the model's. Several subjects
are placed one after another, each by its own map, over the result so far. Other Composers take all subjects
as one layer.

Otherwise, with ``preserve_background`` (the default) the result keeps the given background exactly outside the
region the model changed for the subject, which is the result's matte: a ``layer`` Composer gives its own (the
subject layer's matte, shadow and contact included, brought to full resolution); otherwise the changed region
(per-pixel difference above `CHANGE_LEVEL`, grown by `GROW` px and feathered). Inside, the generation is
blended softly over the full-resolution background. This is the "background preservation" the paper's users
ask for; ``preserve_background=False`` returns the raw generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.torch_dataset import from_signed, to_signed
from ..errors import OptionError
from ..video.geometry import resize_frames
from ..video.layers import composite
from .compose import ComposeInputs, Composite, register_method
from .orientation import matte_centres, mirror_for
from .warp import LOG_ZOOM, SHIFT_X, SHIFT_Y, apply_warp, effects_gain, light_values, relight_gain

CHANGE_LEVEL = 0.08   # mean absolute difference (colours in [0, 1]) above which a pixel counts as changed
GROW = 3              # px
OVERLAP = 0.25        # of a window, cross-faded between neighbouring windows
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


@lru_cache(maxsize=2)
def load_composer(path: str):
    from .composer import Composer

    model = Composer.from_pretrained(path).eval()
    if not model.config.sample_frames or not model.config.sample_size:
        raise OptionError(f"{path}: the Composer records no training clip size (sample_frames/sample_size)")
    return model


def window_starts(count: int, window: int, overlap: int) -> list[int]:
    """First frames of the fewest windows of `window` frames that cover `count` frames overlapping by at least
    `overlap`, spread evenly (the first starts at 0, the last ends on the last frame)."""
    if count <= window:
        return [0]
    windows = math.ceil((count - overlap) / max(1, window - overlap))
    return sorted({round(i * (count - window) / (windows - 1)) for i in range(windows)})


def window_weights(window: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """(window,) cross-fade weights: ramps of `overlap` frames up at the start (unless first) and down at the end
    (unless last), 1 elsewhere; never 0, so normalising by the summed weights joins windows smoothly."""
    weights = np.ones(window, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    if overlap and not first:
        weights[:overlap] = np.minimum(weights[:overlap], ramp)
    if overlap and not last:
        weights[window - overlap:] = np.minimum(weights[window - overlap:], ramp[::-1])
    return weights


MIRRORS = ("auto", "caption", "model", "keep")


def mirror_policy(options: dict, model=None) -> str:
    """The ``mirror`` option as one of `MIRRORS` (True and False, as before: ``model`` and ``keep``); with the
    Composer `model` given, ``auto`` is resolved: ``model`` when it has a scene reader, else ``caption``."""
    value = options.get("mirror", "auto")
    value = {True: "model", False: "keep"}.get(value, value) if isinstance(value, bool) else value
    if value not in MIRRORS:
        raise OptionError(f"mirror {value!r}: expected one of {', '.join(MIRRORS)}")
    if value == "auto" and model is not None:
        return "model" if getattr(model, "reader", None) is not None else "caption"
    return value


def mirror_choice(policy: str, placement: str, prompt: str, centres: np.ndarray, width: int
                  ) -> torch.Tensor | None:
    """The mirror logit (1,) to sample the map for, or None to let the Composer choose at its first step.
    `centres` (T,): the placed subject's matte centres at the Composer's size (`orientation.matte_centres`)."""
    if placement == "given" or policy == "keep":
        return torch.tensor([-10.0])
    if policy == "caption":
        return torch.tensor([10.0 if mirror_for(prompt, centres, width) else -10.0])
    return None


@dataclass
class ClipMap:
    """What a warp Composer decided for one subject over a whole clip: per-frame map `parameters`
    (out_channels, T: the warp's, and a drawn Composer's shadow and light, `merge.warp.light_values`) and the
    mirror logit `flip`."""

    parameters: torch.Tensor
    flip: float

    def frames(self, selection: slice) -> "ClipMap":
        """The map of frames `selection` only."""
        return ClipMap(self.parameters[:, selection], self.flip)


class WarpMap:
    """A warp Composer's map for a whole clip, sampled window by window (`window_starts`): per-frame parameters
    (out_channels, T) cross-faded over the overlaps like pixels, and one mirror logit for the clip (the forced
    choice, or the windows' weighted mean of the Composer's own)."""

    def __init__(self, model, count: int, inputs: ComposeInputs, forced: torch.Tensor | None):
        self.model, self.count, self.inputs, self.forced = model, count, inputs, forced
        self.window = int(model.config.sample_frames)
        self.overlap = int(self.window * OVERLAP)
        self.starts = window_starts(count, self.window, self.overlap)
        self.generator = torch.Generator().manual_seed(inputs.seed)
        self.parameters = torch.zeros(model.out_channels, count)
        self.total = np.zeros(count, np.float32)
        self.flips: list[tuple[float, float]] = []

    def picks(self, index: int) -> np.ndarray:
        """The clip frames window `index` samples (the last frame repeated past the end)."""
        start = self.starts[index]
        return np.minimum(np.arange(start, start + self.window), self.count - 1)

    def sample(self, index: int, small_fg: np.ndarray, small_alpha: np.ndarray, small_bg: np.ndarray) -> None:
        """Sample window `index` from its frames at the Composer's size ((window, h, w, 3) uint8, (window, h, w))."""
        inputs, start = self.inputs, self.starts[index]
        found, flip = self.model.warp_parameters(
            to_signed(small_fg)[None], torch.from_numpy(small_alpha)[None, None], to_signed(small_bg)[None],
            [inputs.prompt], steps=inputs.steps or 20, guidance=inputs.guidance or 1.0, generator=self.generator,
            flip=self.forced)
        keep = min(self.window, self.count - start)
        weights = window_weights(self.window, self.overlap, index == 0, index == len(self.starts) - 1)[:keep]
        self.parameters[:, start:start + keep] += torch.from_numpy(weights) * found[0, :, :keep]
        self.flips.append((float(weights.sum()), float(flip[0])))
        self.total[start:start + keep] += weights

    def result(self) -> ClipMap:
        """The clip's map, once every window is sampled."""
        flip = sum(w * f for w, f in self.flips) / sum(w for w, _ in self.flips)
        parameters = self.parameters / torch.from_numpy(self.total)
        if self.inputs.options.get("placement") == "given":  # where the caller put it: only the colour is ours
            parameters[[LOG_ZOOM, SHIFT_X, SHIFT_Y]] = 0.0
        return ClipMap(parameters, flip)


def _warp_windows(model, small_fg, small_alpha, small_bg, inputs) -> ClipMap:
    """`WarpMap` of a clip held in memory at the Composer's size."""
    forced = mirror_choice(mirror_policy(inputs.options, model), inputs.options.get("placement", "model"),
                           inputs.prompt, matte_centres(small_alpha), small_alpha.shape[-1])
    warp = WarpMap(model, len(small_bg), inputs, forced)
    for index in range(len(warp.starts)):
        picks = warp.picks(index)
        warp.sample(index, small_fg[picks], small_alpha[picks], small_bg[picks])
    return warp.result()


def drawn_options(config) -> dict:
    """`render_warp`'s `effects` and `relight` for a Composer of `config` (what it draws beside its warp)."""
    return {"effects": config.effects_layer, "relight": config.relight}


def render_warp(clip_map: ClipMap, layer: np.ndarray, alpha: np.ndarray, background: np.ndarray, chunk: int = 4,
                effects: bool = False, relight: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The subject layer (T, H, W, 3) premultiplied uint8 with its matte (T, H, W), moved and re-tinted by
    `clip_map` (its frames match the layer's) at the background's own resolution, `chunk` frames at a time, over
    the background (exact outside the matte and, with `effects`, outside the subject's drawn cast shadow); with
    `relight`, the drawn light ramp multiplies the moved subject. Returns (result (T, H, W, 3) uint8, matte
    (T, H, W) float32, the shadow's gain (T, H, W) float32 (1 = untouched) or None without `effects`)."""
    result = np.empty(background.shape, np.uint8)
    matte = np.empty(alpha.shape, np.float32)
    gains = np.empty(alpha.shape, np.float32) if effects else None
    mirror = torch.tensor([clip_map.flip])
    for start in range(0, len(background), chunk):
        end = min(start + chunk, len(background))
        parameters = clip_map.parameters[None, :, start:end]
        colour = torch.from_numpy(layer[start:end].astype(np.float32) / 255).permute(3, 0, 1, 2)[None]
        moved, moved_alpha = apply_warp(parameters, mirror, colour, torch.from_numpy(alpha[start:end])[None, None],
                                        hard=True)
        values = light_values(parameters) if (effects or relight) else None
        if relight:
            moved = torch.minimum(moved * relight_gain(moved_alpha, values), moved_alpha)
        gain = None
        if effects:
            gain = effects_gain(moved_alpha, values, floor=True)[0, 0].numpy()
            gains[start:end] = gain
        moved = moved[0].permute(1, 2, 3, 0).numpy() * 255
        a = moved_alpha[0, 0].numpy()
        a = np.where(a < 1 / 255, 0, a)
        moved = np.where(a[..., None] > 0, moved, 0)  # exactly the background where there is no subject
        result[start:end] = composite(moved, a, background[start:end], gain)
        matte[start:end] = a
    return result, matte, gains


def stm_model(options: dict):
    """(the Composer named by option ``model`` ("default": the bundled one), its folder)."""
    model_dir = options.get("model", "default")
    path = DEFAULT_MODEL if model_dir in (None, "default") else Path(model_dir)
    if not (path / "composer.json").is_file():
        raise OptionError(f"stm: no Composer at {path} (train one with `splitmerge train`, pass --model DIR)")
    return load_composer(str(path)), path


def warp_meta(model, path: Path, count: int, inputs: ComposeInputs, mirrored: list[bool]) -> dict:
    """What a warp Composer's result records (the same in memory and streamed)."""
    window = int(model.config.sample_frames)
    return {"model": str(path), "preserved": True, "window": window,
            "windows": len(window_starts(count, window, int(window * OVERLAP))),
            "size": list(model.config.sample_size), "matte": "model", "mirrored": mirrored,
            "mirror": mirror_policy(inputs.options, model), "rendered": "the input layer warped at full resolution"}


@register_method("stm", options=("mirror", "preserve_background"))
def stm(inputs: ComposeInputs) -> Composite:
    model, path = stm_model(inputs.options)
    if model.config.output == "warp":
        return _stm_warp(inputs, model, path)
    return _stm_generated(inputs, model, path)


def _stm_warp(inputs: ComposeInputs, model, path: Path) -> Composite:
    """A warp Composer: each subject placed by a map of its own, in order, over the result so far, rendered at
    the background's resolution (with a drawn Composer's effects and relighting)."""
    size = tuple(model.config.sample_size)
    background = inputs.background
    result, union, mirrored = background, np.zeros(background.shape[:3], np.float32), []
    shading = np.ones(background.shape[:3], np.float32) if model.config.effects_layer else None
    small_bg = resize_frames(background, size)
    for layer, alpha in inputs.subjects:
        clip_map = _warp_windows(model, resize_frames(layer, size), resize_frames(alpha, size), small_bg, inputs)
        result, matte, gain = render_warp(clip_map, layer, alpha, result, **drawn_options(model.config))
        union, small_bg = matte + (1 - matte) * union, resize_frames(result, size)
        if shading is not None:
            shading = shading * gain
        mirrored.append(bool(clip_map.flip > 0))
    meta = warp_meta(model, path, len(background), inputs, mirrored)
    return Composite(result, inputs.fps, union, background, meta, shading)


def _stm_generated(inputs: ComposeInputs, model, path: Path) -> Composite:
    """Other Composers generate the clip at their size, window by window; the background is kept outside what
    they changed (module docstring)."""
    window, size = int(model.config.sample_frames), tuple(model.config.sample_size)
    background = inputs.background
    count, height, width = background.shape[:3]
    generator = torch.Generator().manual_seed(inputs.seed)
    overlap = int(window * OVERLAP)
    starts = window_starts(count, window, overlap)
    # All subjects as one layer, drawn in order over black; the model draws them where it sees fit (the given
    # placement is where its input layer is: only a warp Composer can hold it).
    layer = np.zeros(background.shape, np.float32)
    alpha = np.zeros(background.shape[:3], np.float32)
    for foreground, matte in inputs.subjects:
        layer = foreground + (1 - matte[..., None]) * layer
        alpha = matte + (1 - matte) * alpha
    small_bg = resize_frames(background, size)
    small_fg = resize_frames(np.clip(layer, 0, 255).astype(np.uint8), size)
    small_alpha = resize_frames(alpha, size)
    layered = model.layered
    made = np.zeros((count, *size, 3), np.float32)
    mattes = np.zeros((count, *size), np.float32)
    total = np.zeros(count, np.float32)
    for index, start in enumerate(starts):
        picks = np.minimum(np.arange(start, start + window), count - 1)
        out = model.sample(to_signed(small_fg[picks])[None], torch.from_numpy(small_alpha[picks])[None, None],
                           to_signed(small_bg[picks])[None], [inputs.prompt], steps=inputs.steps or 20,
                           guidance=inputs.guidance or 1.0, generator=generator, with_matte=layered)
        keep = min(window, count - start)
        weights = window_weights(window, overlap, index == 0, index == len(starts) - 1)[:keep]
        if layered:
            out, matte = out
            mattes[start:start + keep] += weights[:, None, None] * matte[0, 0, :keep].numpy()
        made[start:start + keep] += weights[:, None, None, None] * from_signed(out[0])[:keep]
        total[start:start + keep] += weights
    generated = np.rint(made / total[:, None, None, None]).clip(0, 255).astype(np.uint8)
    mattes /= total[:, None, None]
    if size != (height, width):
        generated = resize_frames(generated, (height, width))
    if not inputs.options.get("preserve_background", True):
        return Composite(generated, inputs.fps, None, background, {"model": str(path), "preserved": False})
    if layered:
        matte = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in mattes]).clip(0, 1)
    else:
        changed = np.abs(generated.astype(np.float32) - background.astype(np.float32)).mean(axis=-1) / 255
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW + 1, 2 * GROW + 1))
        matte = np.stack([cv2.GaussianBlur(cv2.dilate((c > CHANGE_LEVEL).astype(np.float32), kernel), (0, 0), 1.0)
                          for c in changed]).clip(0, 1)
    matte[matte < 1 / 255] = 0
    result = np.rint(matte[..., None] * generated + (1 - matte[..., None]) * background).astype(np.uint8)
    return Composite(result, inputs.fps, matte.astype(np.float32), background,
                     {"model": str(path), "preserved": True, "window": window, "windows": len(starts),
                      "size": list(size),
                      "matte": "model" if layered else "changed region"})
