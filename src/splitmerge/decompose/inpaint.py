"""The ``wan-vace`` restorer: the subject's hole filled by a video diffusion model (diffusers ``WanVACEPipeline``).

VACE inpainting convention: the pipeline receives the frames and a mask per frame; white (1) marks what to
generate, black (0) what to keep as conditioning. The hole is the subject's matte grown by `dilation` px. The clip
is brought to a size the model accepts (both sides multiples of the VAE's spatial factor times the transformer's
patch, 16 for Wan 2.1; the area capped at `max_area`) and to 4k + 1 frames (the last frame repeated, trimmed
after). The generated frames are resized back and blended in inside the hole only, with a feather that lies
inside the hole: every pixel outside the hole is the input's, bit for bit.

Weights: a local diffusers folder (``model_index.json``, e.g. a download of ``Wan-AI/Wan2.1-VACE-1.3B-diffusers``)
given as ``model_path`` (CLI ``--restorer-model``) or by ``SPLITMERGE_INPAINT_MODEL``. A folder saved without
``text_encoder``/``tokenizer`` also works: the prompt is then all-zero embeddings of the transformer's text width
(no text guidance, so classifier-free guidance is skipped, it would change nothing).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import OptionError
from ..video.geometry import working_size
from .backends import Backend, BackendUnavailable, SplitClip, register
from .restore import blend_weights, hole_masks
from .weights import LocalWeights

ENV_VAR = "SPLITMERGE_INPAINT_MODEL"
STEPS = 30
GUIDANCE = 5.0              # the pipeline's own default
SEED = 0
DILATION = 6                # px the matte is grown by before it becomes the hole
FEATHER = 2.0               # px (Gaussian sigma) of the blend, inside the hole
MAX_AREA = 480 * 832        # working pixels per frame at most (Wan 2.1's 480p)
TEXT_TOKENS = 512           # Wan's T5 context length; padded positions are zero
PROMPT = ("an empty scene, only the background, nobody and nothing in the foreground, the same place, light and "
          "camera as the rest of the video, sharp natural detail")
NEGATIVE_PROMPT = ("person, people, animal, vehicle, object in the foreground, silhouette, shadow of a figure, "
                   "blurry, smeared, distorted, flicker, artifacts, text, watermark")


WEIGHTS = LocalWeights(
    label="restorer 'wan-vace'", env_var=ENV_VAR, flag="--restorer-model", manifest="model_index.json",
    key="_class_name", accepted=("WanVACEPipeline",), kind="a diffusers WanVACEPipeline folder",
    modules=("diffusers.pipelines.wan", "transformers"), install="pip install 'splitmerge[models]' (diffusers>=0.34)")


def _has_component(path: Path, name: str) -> bool:
    """Whether the pipeline folder holds component `name` (listed in model_index.json and present on disk)."""
    entry = json.loads((path / "model_index.json").read_text()).get(name)
    return bool(entry) and entry[0] is not None and (path / name).is_dir()


def inner_blend_weights(hole: np.ndarray, subject: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """(H, W) float32 weight of the generated pixels: 1 on the `subject` (H, W) bool and deep inside the `hole`
    (H, W) bool, falling towards 0 at the hole's edge, exactly 0 outside the hole."""
    reach = int(np.ceil(2 * feather))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    core = (cv2.erode(hole.astype(np.uint8), kernel) > 0) | subject  # a thin hole still loses its subject
    return blend_weights(core & hole, feather) * hole


@register("restorer")
class DiffusersInpaintRestorer(Backend):
    """Generate the scene behind the subject with Wan VACE, keep every pixel outside the hole."""

    name = "wan-vace"
    description = "mask-guided video inpainting with diffusers WanVACEPipeline from local weights"

    @classmethod
    def availability(cls, model_path: str | os.PathLike | None = None) -> tuple[bool, str]:
        """(True, "") when the extra is installed and the Wan VACE folder (`model_path`, else the environment
        variable) looks usable; else (False, the reason with the fix)."""
        return WEIGHTS.availability(model_path)

    def __init__(self, model_path: str | os.PathLike | None = None, steps: int = STEPS, guidance: float = GUIDANCE,
                 seed: int = SEED, dilation: int = DILATION, feather: float = FEATHER, prompt: str = PROMPT,
                 negative_prompt: str = NEGATIVE_PROMPT, max_area: int = MAX_AREA, device: str | None = None):
        self.path = WEIGHTS.resolve(model_path)
        for option, value, low in (("steps", steps, 1), ("seed", seed, 0), ("dilation", dilation, 0),
                                   ("max_area", max_area, 256)):
            if not isinstance(value, int) or value < low:
                raise OptionError(f"restorer 'wan-vace': {option} {value!r} must be an integer >= {low}")
        for option, value in (("guidance", guidance), ("feather", feather)):
            if not isinstance(value, (int, float)) or value < 0:
                raise OptionError(f"restorer 'wan-vace': {option} {value!r} must be a number >= 0")
        self.steps, self.guidance, self.seed = steps, float(guidance), seed
        self.dilation, self.feather, self.max_area = dilation, float(feather), max_area
        self.prompt, self.negative_prompt = " ".join(prompt.split()), " ".join(negative_prompt.split())
        self.pipe = self._load(device)
        transformer = self.pipe.transformer
        self.base = self.pipe.vae_scale_factor_spatial * transformer.config.patch_size[1]
        self.temporal = self.pipe.vae_scale_factor_temporal
        self.has_text = self.pipe.text_encoder is not None and self.pipe.tokenizer is not None
        self._embeds = None
        self.info: dict = {}

    def _load(self, device: str | None):
        import torch
        from diffusers import AutoencoderKLWan, WanVACEPipeline

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        absent = {name: None for name in ("text_encoder", "tokenizer") if not _has_component(self.path, name)}
        try:
            # The VAE stays float32 (as Wan recommends): loaded on its own so its weights are never rounded.
            vae = AutoencoderKLWan.from_pretrained(self.path, subfolder="vae", dtype=torch.float32)
            pipe = WanVACEPipeline.from_pretrained(self.path, vae=vae, dtype=dtype, **absent)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as error:
            raise WEIGHTS.load_error(self.path, error) from None
        if pipe.transformer is None:
            raise BackendUnavailable(f"restorer 'wan-vace': {self.path} has no transformer")
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)

    def describe_config(self) -> dict:
        # The folder's name only: the full path may be private (layers.json travels with the data).
        return {"name": self.name, "model": self.path.name, "steps": self.steps, "guidance": self.guidance,
                "seed": self.seed, "dilation": self.dilation, "feather": self.feather, "max_area": self.max_area,
                "text": "t5" if self.has_text else "zero embeddings (no text encoder in the folder)",
                "prompt": self.prompt if self.has_text else "", "device": self.device.type}

    # ------------------------------------------------------------------------------------------------ restore

    def restore(self, clip: SplitClip, alpha: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 clip with the subject of matte `alpha` (T, H, W) removed and its hole generated."""
        import torch
        from PIL import Image

        started = time.perf_counter()
        frames = clip.frames
        count, height, width = frames.shape[:3]
        hole = hole_masks(alpha, self.dilation)
        if not hole.any():
            return frames.copy()
        size_h, size_w = working_size(height, width, self.base, self.max_area)
        padded = -(-(count - 1) // self.temporal) * self.temporal + 1  # 4k + 1 frames for Wan's VAE
        area = cv2.INTER_AREA
        video = [Image.fromarray(cv2.resize(frame, (size_w, size_h), interpolation=area)) for frame in frames]
        # Any working pixel that touches the hole is generated: the hole must not shrink when downscaled.
        masks = [Image.fromarray(np.where(cv2.resize(h.astype(np.uint8) * 255, (size_w, size_h), interpolation=area)
                                          > 0, 255, 0).astype(np.uint8)) for h in hole]
        video += [video[-1]] * (padded - count)
        masks += [masks[-1]] * (padded - count)

        positive, negative = self._prompt_embeds()
        guidance = self.guidance if self.has_text else 1.0  # equal zero embeddings: guidance would change nothing
        generator = torch.Generator("cpu").manual_seed(self.seed)  # CPU noise: the same on every device
        generated = self.pipe(video=video, mask=masks, prompt_embeds=positive,
                              negative_prompt_embeds=negative if guidance > 1 else None, height=size_h,
                              width=size_w, num_frames=padded, num_inference_steps=self.steps,
                              guidance_scale=guidance, generator=generator, output_type="np").frames[0][:count]

        out = frames.copy()
        for t in range(count):
            if not hole[t].any():
                continue
            fill = cv2.resize(np.asarray(generated[t], np.float32) * 255.0, (width, height),
                              interpolation=cv2.INTER_CUBIC)
            weight = inner_blend_weights(hole[t], alpha[t] > 0.01, self.feather)[..., None]
            blended = np.clip(np.rint(frames[t] * (1 - weight) + fill * weight), 0, 255).astype(np.uint8)
            out[t] = np.where(hole[t][..., None], blended, frames[t])
        self.info = {"working_size": [size_h, size_w], "frames": padded, "seconds": time.perf_counter() - started}
        return out

    def _prompt_embeds(self):
        """(positive, negative) text embeddings, each (1, TEXT_TOKENS, text_dim), computed once."""
        if self._embeds is None:
            if self.has_text:
                self._embeds = (self._encode(self.prompt), self._encode(self.negative_prompt))
            else:
                import torch

                zeros = torch.zeros(1, TEXT_TOKENS, self.pipe.transformer.config.text_dim,
                                    dtype=self.pipe.transformer.dtype, device=self.device)
                self._embeds = (zeros, zeros)
        return self._embeds

    def _encode(self, text: str):
        """(1, TEXT_TOKENS, text_dim) T5 embeddings of `text` as the pipeline makes them (zero past the prompt's
        tokens), without the pipeline's optional ftfy text repair (a prompt here is plain text, already
        whitespace-normalised)."""
        import torch

        tokens = self.pipe.tokenizer([text], padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                                     add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        mask = tokens.attention_mask.to(self.pipe.text_encoder.device)
        with torch.inference_mode():
            hidden = self.pipe.text_encoder(tokens.input_ids.to(mask.device), mask).last_hidden_state
        hidden = hidden * mask[..., None].to(hidden.dtype)
        return hidden.to(device=self.device, dtype=self.pipe.transformer.dtype)
