"""The ``copy-paste+i2v`` baseline (the paper's Copy-Paste + I2V): the subjects are copy-pasted into the first
background frame, and a diffusers image-to-video pipeline from a local folder animates that frame with the
prompt. The scene's own later frames are not used: this is what an I2V model alone makes of a pasted still.

The pipeline is any diffusers image-to-video pipeline saved in a local folder (``WanImageToVideoPipeline``,
``CogVideoXImageToVideoPipeline``, ``LTXImageToVideoPipeline``, ...), given with ``model=`` / ``--model``.
It runs at the background's aspect with at most `MAX_AREA` pixels, sides multiples of `MULTIPLE`, for the
background's frame count (the pipeline may round it; the result is trimmed or held to the background's
length) and is resized back. Arguments a pipeline does not take (e.g. a prompt) are not passed.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import MissingFileError, OptionError
from ..video.geometry import resize_frames, working_size
from .compose import ComposeInputs, Composite, over, register_method

MULTIPLE = 16
MAX_AREA = 480 * 832        # Wan 2.1's 480p
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 5.0


@lru_cache(maxsize=1)
def load_pipeline(path: str):
    from diffusers import DiffusionPipeline

    folder = Path(path).expanduser()
    if not (folder / "model_index.json").is_file():
        raise MissingFileError(f"{folder}: no model_index.json (expected a diffusers image-to-video pipeline)")
    pipeline = DiffusionPipeline.from_pretrained(folder)
    if "image" not in inspect.signature(pipeline.__call__).parameters:
        raise OptionError(f"{folder}: {type(pipeline).__name__} does not take an image (not image-to-video)")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@register_method("copy-paste+i2v")
def copy_paste_i2v(inputs: ComposeInputs) -> Composite:
    import torch
    from PIL import Image

    model = inputs.options.get("model")
    if model in (None, "default"):
        raise OptionError("copy-paste+i2v: give a local diffusers image-to-video pipeline folder (--model DIR)")
    pipeline = load_pipeline(str(model))
    pasted = over(inputs).frames
    count, height, width = pasted.shape[:3]
    size = working_size(height, width, MULTIPLE, MAX_AREA)
    first = Image.fromarray(resize_frames(pasted[:1], size)[0])
    settings = {"image": first, "prompt": inputs.prompt, "height": size[0], "width": size[1], "num_frames": count,
                "num_inference_steps": inputs.steps or DEFAULT_STEPS,
                "guidance_scale": inputs.guidance or DEFAULT_GUIDANCE,
                "generator": torch.Generator().manual_seed(inputs.seed), "output_type": "np"}
    accepted = inspect.signature(pipeline.__call__).parameters
    output = pipeline(**{key: value for key, value in settings.items() if key in accepted})
    frames = np.asarray(output.frames[0], dtype=np.float32)   # (F, h, w, 3) in [0, 1]
    frames = np.rint(frames * 255).clip(0, 255).astype(np.uint8)
    picks = np.minimum(np.arange(count), len(frames) - 1)     # trimmed, or the last frame held
    video = resize_frames(frames[picks], (height, width))
    return Composite(video, inputs.fps, None, inputs.background,
                     {"model": str(model), "pipeline": type(pipeline).__name__, "size": list(size),
                      "generated_frames": len(frames)})
