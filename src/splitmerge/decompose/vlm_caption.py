"""Captioners that ask a vision-language model about the clip, as the paper does.

Both show the model `frames` frames sampled evenly over the clip (12 in the paper) with the paper's prompt
"Describe the video in detail." and return its answer on one line:

- ``http``: a model behind an OpenAI-compatible endpoint (vLLM, SGLang, Ollama, OpenAI, ...), configured by
  ``--vlm-url``/``--vlm-model``/``--vlm-key`` or ``SPLITMERGE_VLM_URL``/``SPLITMERGE_VLM_MODEL``/
  ``SPLITMERGE_VLM_API_KEY``; answers are cached under ``SPLITMERGE_VLM_CACHE`` when it is set.
- ``transformers``: a local image-text-to-text model folder (Qwen2-VL, Qwen2.5-VL, InternVL-hf, LLaVA, ...) given by
  ``--caption-model`` or ``SPLITMERGE_CAPTION_MODEL``; greedy decoding, so captions are repeatable.

The subject matte is not used: the paper captions the whole video.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..vlm.frames import CAPTION_FRAMES, sample_frames
from ..vlm.http import MODEL_ENV, URL_ENV, ChatClient, VLMError
from .backends import Backend, BackendUnavailable, SplitClip, register

PROMPT = "Describe the video in detail."
MAX_SIDE = 512          # pixels: the longer side of each frame shown to the model
MAX_TOKENS = 512        # the longest caption, in tokens
MODEL_PATH_ENV = "SPLITMERGE_CAPTION_MODEL"


class _VLMCaptioner(Backend):
    """Samples frames, asks `_ask`, returns the answer with its whitespace normalised."""

    def __init__(self, frames: int = CAPTION_FRAMES, prompt: str = PROMPT, max_side: int | None = MAX_SIDE):
        if not isinstance(frames, int) or frames < 1:
            raise VLMError(f"{self.name} captioner: frames {frames!r} must be a positive integer")
        if not isinstance(prompt, str) or not prompt.strip():
            raise VLMError(f"{self.name} captioner: the prompt must be non-empty text")
        if max_side is not None and (not isinstance(max_side, int) or max_side < 16):
            raise VLMError(f"{self.name} captioner: max_side {max_side!r} must be an integer >= 16 or None")
        self.frames = frames
        self.prompt = prompt
        self.max_side = max_side

    def describe(self, clip: SplitClip, alpha: np.ndarray) -> str:
        """The model's description of `clip` (T, H, W, 3) uint8 on one line; `alpha` (T, H, W) is ignored."""
        images = sample_frames(clip.frames, self.frames, self.max_side)
        caption = " ".join(self._ask(images).split())
        if not caption:
            raise VLMError(f"{self.name} captioner: {self._source()} gave an empty caption")
        return caption

    def describe_config(self) -> dict:
        return {"name": self.name, "frames": self.frames, "prompt": self.prompt, "max_side": self.max_side}

    def _ask(self, images: list[np.ndarray]) -> str:
        raise NotImplementedError

    def _source(self) -> str:
        raise NotImplementedError


@register("captioner")
class HTTPCaptioner(_VLMCaptioner):
    """A vision-language model behind an OpenAI-compatible chat endpoint; temperature 0."""

    name = "http"
    description = "a vision-language model behind an OpenAI-compatible endpoint (vLLM, SGLang, Ollama, ...)"

    @classmethod
    def availability(cls, url: str | None = None, **options) -> tuple[bool, str]:
        """Available when an endpoint is configured: `url` when given, else ``SPLITMERGE_VLM_URL``."""
        if not (url or os.environ.get(URL_ENV)):
            return False, (f"no endpoint configured: set {URL_ENV} and {MODEL_ENV} "
                           "(or pass --vlm-url and --vlm-model)")
        return True, ""

    def __init__(self, url: str | None = None, model: str | None = None, api_key: str | None = None,
                 frames: int = CAPTION_FRAMES, prompt: str = PROMPT, max_side: int | None = MAX_SIDE,
                 max_tokens: int = MAX_TOKENS, timeout: float = 60.0, retries: int = 3,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(frames, prompt, max_side)
        if not (url or os.environ.get(URL_ENV)):
            raise BackendUnavailable(f"captioner 'http': no endpoint; pass --vlm-url or set {URL_ENV}")
        if not (model or os.environ.get(MODEL_ENV)):
            raise BackendUnavailable(f"captioner 'http': no model name; pass --vlm-model or set {MODEL_ENV}")
        self.client = ChatClient(url, model, api_key, timeout=timeout, retries=retries, cache_dir=cache_dir)
        self.max_tokens = max_tokens

    def _ask(self, images: list[np.ndarray]) -> str:
        return self.client.ask(self.prompt, images, temperature=0.0, max_tokens=self.max_tokens)

    def _source(self) -> str:
        return f"{self.client.model} at {self.client.public_endpoint}"

    def describe_config(self) -> dict:
        return {**super().describe_config(), "model": self.client.model, "url": self.client.public_endpoint,
                "max_tokens": self.max_tokens}


@register("captioner")
class TransformersCaptioner(_VLMCaptioner):
    """A local transformers image-text-to-text model folder; greedy decoding."""

    name = "transformers"
    description = "a local vision-language model folder (Qwen2-VL, Qwen2.5-VL, InternVL-hf, ...) via transformers"

    @classmethod
    def availability(cls, model_path: str | os.PathLike | None = None, **options) -> tuple[bool, str]:
        """Available when transformers is installed and a model folder is given (`model_path`, else
        ``SPLITMERGE_CAPTION_MODEL``) and exists."""
        if importlib.util.find_spec("transformers") is None:
            return False, "transformers is not installed: pip install 'splitmerge[models]'"
        path = model_path or os.environ.get(MODEL_PATH_ENV)
        if not path:
            return False, f"no model folder: pass --caption-model DIR or set {MODEL_PATH_ENV}"
        if not Path(path).expanduser().is_dir():
            return False, f"model folder {path} does not exist"
        return True, ""

    def __init__(self, model_path: str | os.PathLike | None = None, device: str | None = None,
                 frames: int = CAPTION_FRAMES, prompt: str = PROMPT, max_side: int | None = MAX_SIDE,
                 max_new_tokens: int = MAX_TOKENS):
        super().__init__(frames, prompt, max_side)
        ok, reason = self.availability(model_path)
        if not ok:
            raise BackendUnavailable(f"captioner 'transformers': {reason}")
        from ..vlm.local import LocalVLM

        self.model = LocalVLM(model_path or os.environ[MODEL_PATH_ENV], device=device, max_new_tokens=max_new_tokens)

    def _ask(self, images: list[np.ndarray]) -> str:
        return self.model.ask(self.prompt, images)

    def _source(self) -> str:
        return f"the model in {self.model.path}"

    def describe_config(self) -> dict:
        return {**super().describe_config(), "model": str(self.model.path),
                "max_new_tokens": self.model.max_new_tokens}
