"""The ``stm`` composition method: the trained Composer behind `sm.compose`.

The Composer runs at the clip length and size it was trained at (``sample_frames``, ``sample_size`` in its
``composer.json``): the inputs are resized to that size and cut into windows of that many frames overlapping
by a quarter window (the last one ends on the last frame; a clip shorter than a window is padded by repeating
its final frame); each window is sampled, the overlaps are cross-faded, and the result is resized back.

With ``preserve_background`` (the default) the result keeps the given background exactly outside the region
the model changed for the subject, which is the result's matte: a Composer with ``output="layer"`` gives its
own (the subject layer's matte, shadow and contact included, brought to full resolution); otherwise it is the
changed region (per-pixel difference above `CHANGE_LEVEL`, grown by `GROW` px and feathered). Inside, the
generation is blended softly over the full-resolution background. This is the "background preservation" the
paper's users ask for; ``preserve_background=False`` returns the raw generation.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.torch_dataset import from_signed, to_signed
from ..errors import OptionError
from .compose import ComposeInputs, Composite, register_method

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


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


@register_method("stm")
def stm(inputs: ComposeInputs) -> Composite:
    model_dir = inputs.options.get("model", "default")
    path = DEFAULT_MODEL if model_dir in (None, "default") else Path(model_dir)
    if not (path / "composer.json").is_file():
        raise OptionError(f"stm: no Composer at {path} (train one with `splitmerge train`, pass --model DIR)")
    model = load_composer(str(path))
    window, size = int(model.config.sample_frames), tuple(model.config.sample_size)
    background = inputs.background
    count, height, width = background.shape[:3]
    # All subjects as one layer, drawn in order over black.
    layer = np.zeros(background.shape, np.float32)
    alpha = np.zeros(background.shape[:3], np.float32)
    for foreground, matte in inputs.subjects:
        layer = foreground + (1 - matte[..., None]) * layer
        alpha = matte + (1 - matte) * alpha
    small_bg = _resize(background, size)
    small_fg = _resize(np.clip(layer, 0, 255).astype(np.uint8), size)
    small_alpha = np.stack([cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_AREA) for a in alpha])
    generator = torch.Generator().manual_seed(inputs.seed)
    layered = model.config.output == "layer"
    overlap = int(window * OVERLAP)
    starts = window_starts(count, window, overlap)
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
        generated = _resize(generated, (height, width))
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
