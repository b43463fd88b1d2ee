"""The ``stm`` composition method: the trained Composer behind `sm.compose`.

The Composer runs at the clip length and size it was trained at (``sample_frames``, ``sample_size`` in its
``composer.json``): the inputs are resized (cover crop) to that size and cut into windows of that many frames
(the last one padded by repeating its final frame); each window is sampled, and the results are joined and
resized back. With ``preserve_background`` (the default) the result keeps the given background exactly wherever
the generated video does not differ from it: the changed region (per-pixel difference above `CHANGE_LEVEL`,
grown by `GROW` px and feathered) is the result's matte, and the background shows everywhere else. This is the
"background preservation" the paper's users ask for; ``preserve_background=False`` returns the raw generation.
"""

from __future__ import annotations

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
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


@lru_cache(maxsize=2)
def load_composer(path: str):
    from .composer import Composer

    model = Composer.from_pretrained(path).eval()
    if not model.config.sample_frames or not model.config.sample_size:
        raise OptionError(f"{path}: the Composer records no training clip size (sample_frames/sample_size)")
    return model


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
    made = []
    for start in range(0, count, window):
        picks = np.minimum(np.arange(start, start + window), count - 1)
        out = model.sample(to_signed(small_fg[picks])[None], torch.from_numpy(small_alpha[picks])[None, None],
                           to_signed(small_bg[picks])[None], [inputs.prompt], steps=inputs.steps or 20,
                           guidance=inputs.guidance or 1.0, generator=generator)
        made.append(from_signed(out[0])[: min(window, count - start)])
    generated = _resize(np.concatenate(made), (height, width)) if size != (height, width) else np.concatenate(made)
    if not inputs.options.get("preserve_background", True):
        return Composite(generated, inputs.fps, None, background, {"model": str(path), "preserved": False})
    changed = np.abs(generated.astype(np.float32) - background.astype(np.float32)).mean(axis=-1) / 255
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW + 1, 2 * GROW + 1))
    matte = np.stack([cv2.GaussianBlur(cv2.dilate((c > CHANGE_LEVEL).astype(np.float32), kernel), (0, 0), 1.0)
                      for c in changed]).clip(0, 1)
    matte[matte < 1 / 255] = 0
    result = np.rint(matte[..., None] * generated + (1 - matte[..., None]) * background).astype(np.uint8)
    return Composite(result, inputs.fps, matte.astype(np.float32), background,
                     {"model": str(path), "preserved": True, "window": window, "size": list(size)})
