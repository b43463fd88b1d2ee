"""The ``stm`` composition method: the trained Composer behind `sm.compose`.

The Composer runs at the clip length and size it was trained at (``sample_frames``, ``sample_size`` in its
``composer.json``): the inputs are resized to that size and cut into windows of that many frames overlapping
by a quarter window (the last one ends on the last frame; a clip shorter than a window is padded by repeating
its final frame); each window is sampled, the overlaps are cross-faded (`merge.windows`), and the result is resized
back.

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

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.torch_dataset import from_signed, to_signed
from ..errors import OptionError
from ..video.geometry import resize_frames
from ..video.layers import composite, union_matte
from ..video.transforms import warp_layer
from .compose import ComposeInputs, Composite, register_method
from .orientation import matte_centres, mirror_for
from .windows import CrossFade
from .warp import LOG_ZOOM, SHIFT_X, SHIFT_Y, apply_warp, effects_gain, hold_on_world, light_values, relight_gain

CHANGE_LEVEL = 0.08   # mean absolute difference (colours in [0, 1]) above which a pixel counts as changed
GROW = 3              # px
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


DEVICE_VARIABLE = "SPLITMERGE_DEVICE"   # where sampling runs: "cpu", "cuda", "cuda:N"; default a GPU when there is


def inference_device() -> torch.device:
    """Where a Composer samples: `SPLITMERGE_DEVICE` when set, else the first GPU when there is one, else the CPU.
    A value torch does not know, or a GPU that is not there, is a one-line error."""
    import os

    chosen = os.environ.get(DEVICE_VARIABLE)
    if not chosen:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(chosen)
    except (RuntimeError, ValueError):
        raise OptionError(f"{DEVICE_VARIABLE}={chosen!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda") or device.type == "cuda" and not torch.cuda.is_available():
        here = "cpu, cuda" if torch.cuda.is_available() else "cpu only"
        raise OptionError(f"{DEVICE_VARIABLE}={chosen!r}: no such device here ({here})")
    return device


@lru_cache(maxsize=2)
def load_composer(path: str):
    """The Composer in folder `path`, in eval mode, on `inference_device` (its outputs come back to the CPU)."""
    from .composer import Composer

    model = Composer.from_pretrained(path).eval().to(inference_device())
    if not model.config.sample_frames or not model.config.sample_size:
        raise OptionError(f"{path}: the Composer records no training clip size (sample_frames/sample_size)")
    return model


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
    (out_channels, T: the warp's, and a drawn Composer's shadow and light, `merge.warp.light_values`), the
    mirror logit `flip`, and for a mirrored subject held on the world (`warp.hold_on_world`) the `reflections`
    (T, 3, 3) that mirror the layer before the map moves it (the map then unmirrored)."""

    parameters: torch.Tensor
    flip: float
    reflections: np.ndarray | None = None

    @property
    def mirrored(self) -> bool:
        return bool(self.flip > 0) or self.reflections is not None

    def frames(self, selection: slice) -> "ClipMap":
        """The map of frames `selection` only."""
        return ClipMap(self.parameters[:, selection], self.flip,
                       None if self.reflections is None else self.reflections[selection])


class WarpMap:
    """A warp Composer's map for a whole clip, sampled window by window (`merge.windows.CrossFade`): per-frame
    parameters (out_channels, T) cross-faded over the overlaps like pixels, and one mirror logit for the clip (the
    forced choice, or the windows' weighted mean of the Composer's own)."""

    def __init__(self, model, count: int, inputs: ComposeInputs, forced: torch.Tensor | None):
        self.model, self.inputs, self.forced = model, inputs, forced
        self.windows = CrossFade(count, int(model.config.sample_frames))
        self.generator = torch.Generator().manual_seed(inputs.seed)
        self.flips: list[tuple[float, float]] = []

    def sample(self, index: int, small_fg: np.ndarray, small_alpha: np.ndarray, small_bg: np.ndarray) -> None:
        """Sample window `index` from its frames at the Composer's size ((window, h, w, 3) uint8, (window, h, w))."""
        inputs = self.inputs
        found, flip = self.model.warp_parameters(
            to_signed(small_fg)[None], torch.from_numpy(small_alpha)[None, None], to_signed(small_bg)[None],
            [inputs.prompt], steps=inputs.steps or 20, guidance=inputs.guidance or 1.0, generator=self.generator,
            flip=self.forced)
        weight = self.windows.add(index, found[0].T.float().cpu().numpy())
        self.flips.append((weight, float(flip[0])))

    def result(self) -> ClipMap:
        """The clip's map, once every window is sampled."""
        flip = sum(w * f for w, f in self.flips) / sum(w for w, _ in self.flips)
        parameters = torch.from_numpy(self.windows.result().T.copy())
        if self.inputs.options.get("placement") == "given":  # where the caller put it: only the colour is ours
            parameters[[LOG_ZOOM, SHIFT_X, SHIFT_Y]] = 0.0
        return ClipMap(parameters, flip)


def _warp_windows(model, small_fg, small_alpha, small_bg, inputs) -> ClipMap:
    """`WarpMap` of a clip held in memory at the Composer's size."""
    forced = mirror_choice(mirror_policy(inputs.options, model), inputs.options.get("placement", "model"),
                           inputs.prompt, matte_centres(small_alpha), small_alpha.shape[-1])
    warp = WarpMap(model, len(small_bg), inputs, forced)
    for index in range(len(warp.windows)):
        picks = warp.windows.picks(index)
        warp.sample(index, small_fg[picks], small_alpha[picks], small_bg[picks])
    return warp.result()


def held_map(clip_map: ClipMap, inputs: ComposeInputs, index: int, size: tuple[int, int]) -> ClipMap:
    """Subject `index`'s map, held on the world when it is world-anchored and the Composer places it
    (``placement="model"``): placed as in the first frame, carried by the camera (`warp.hold_on_world`); `size`
    (H, W): the background's."""
    carried = inputs.carried[index] if index < len(inputs.carried) else None
    if carried is None or inputs.options.get("placement") != "model":
        return clip_map
    count = clip_map.parameters.shape[1]
    parameters, reflections = hold_on_world(clip_map.parameters, carried.camera[:count], carried.targets[:count],
                                            size, mirrored=clip_map.flip > 0)
    return ClipMap(parameters, -abs(clip_map.flip) if reflections is not None else clip_map.flip, reflections)


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
        pair = layer[start:end], alpha[start:end]
        if clip_map.reflections is not None:   # mirrored about the carried axis first (`warp.hold_on_world`)
            pair = warp_layer(*pair, clip_map.reflections[start:end], background.shape[1:3])
        colour = torch.from_numpy(pair[0].astype(np.float32) / 255).permute(3, 0, 1, 2)[None]
        moved, moved_alpha = apply_warp(parameters, mirror, colour, torch.from_numpy(pair[1])[None, None], hard=True)
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


class RenderedStack:
    """Subjects rendered one over another on a plate (T, H, W, 3) uint8: the result so far, the union of their
    mattes (T, H, W) and, with `effects`, the product of their shadows' gains (T, H, W) (1 = untouched)."""

    def __init__(self, plate: np.ndarray, effects: bool = False):
        self.result = plate
        self.union = np.zeros(plate.shape[:3], np.float32)
        self.shading = np.ones(plate.shape[:3], np.float32) if effects else None

    def add(self, result: np.ndarray, matte: np.ndarray, gain: np.ndarray | None = None) -> None:
        """The next subject's rendering over `result` so far: the new result, its matte and its shadow's gain."""
        self.result, self.union = result, union_matte(self.union, matte)
        if self.shading is not None and gain is not None:
            self.shading = self.shading * gain

    def warped(self, clip_map: ClipMap, layer: np.ndarray, alpha: np.ndarray, drawn: dict) -> bool:
        """Render a subject layer moved by `clip_map` (`render_warp`, `drawn`: `drawn_options`) over the result so
        far. Returns whether it was mirrored."""
        self.add(*render_warp(clip_map, layer, alpha, self.result, **drawn))
        return clip_map.mirrored


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
    return {"model": str(path), "preserved": True, "window": window, "windows": len(CrossFade(count, window)),
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
    stack, mirrored = RenderedStack(background, model.config.effects_layer), []
    for layer, alpha in inputs.subjects:  # each placed over the background with the ones before it rendered
        small_bg = resize_frames(stack.result, size)
        clip_map = _warp_windows(model, resize_frames(layer, size), resize_frames(alpha, size), small_bg, inputs)
        clip_map = held_map(clip_map, inputs, len(mirrored), background.shape[1:3])
        mirrored.append(stack.warped(clip_map, layer, alpha, drawn_options(model.config)))
    meta = warp_meta(model, path, len(background), inputs, mirrored)
    return Composite(stack.result, inputs.fps, stack.union, background, meta, stack.shading)


def _stm_generated(inputs: ComposeInputs, model, path: Path) -> Composite:
    """Other Composers generate the clip at their size, window by window; the background is kept outside what
    they changed (module docstring)."""
    window, size = int(model.config.sample_frames), tuple(model.config.sample_size)
    background = inputs.background
    count, height, width = background.shape[:3]
    generator = torch.Generator().manual_seed(inputs.seed)
    windows = CrossFade(count, window)
    # All subjects as one layer, drawn in order over black; the model draws them where it sees fit (the given
    # placement is where its input layer is: only a warp Composer can hold it).
    layer = np.zeros(background.shape, np.uint8)
    alpha = np.zeros(background.shape[:3], np.float32)
    for foreground, matte in inputs.subjects:
        layer, alpha = composite(foreground, matte, layer), union_matte(alpha, matte)
    small_bg, small_fg, small_alpha = (resize_frames(frames, size) for frames in (background, layer, alpha))
    layered = model.layered
    for index in range(len(windows)):
        picks = windows.picks(index)
        out = model.sample(to_signed(small_fg[picks])[None], torch.from_numpy(small_alpha[picks])[None, None],
                           to_signed(small_bg[picks])[None], [inputs.prompt], steps=inputs.steps or 20,
                           guidance=inputs.guidance or 1.0, generator=generator, with_matte=layered)
        out, matte = out if layered else (out, torch.zeros(1, 1, window, *size))
        # The matte rides as a fourth channel: both are cross-faded alike.
        windows.add(index, np.concatenate([from_signed(out[0]), matte[0, 0, ..., None].float().cpu().numpy()],
                                          axis=-1))
    faded = windows.result()
    generated = np.rint(faded[..., :3]).clip(0, 255).astype(np.uint8)
    if size != (height, width):
        generated = resize_frames(generated, (height, width))
    if not inputs.options.get("preserve_background", True):
        return Composite(generated, inputs.fps, None, background, {"model": str(path), "preserved": False})
    matte = resize_frames(faded[..., 3], (height, width)).clip(0, 1) if layered else changed_region(generated,
                                                                                                    background)
    matte[matte < 1 / 255] = 0
    result = composite(matte[..., None] * generated, matte, background)
    return Composite(result, inputs.fps, matte.astype(np.float32), background,
                     {"model": str(path), "preserved": True, "window": window, "windows": len(windows),
                      "size": list(size), "matte": "model" if layered else "changed region"})


def changed_region(generated: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(T, H, W) float32 in [0, 1]: where the generation (T, H, W, 3) uint8 differs from the background by more
    than `CHANGE_LEVEL`, grown by `GROW` px and feathered."""
    changed = np.abs(generated.astype(np.float32) - background.astype(np.float32)).mean(axis=-1) / 255
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW + 1, 2 * GROW + 1))
    return np.stack([cv2.GaussianBlur(cv2.dilate((c > CHANGE_LEVEL).astype(np.float32), kernel), (0, 0), 1.0)
                     for c in changed]).clip(0, 1)
