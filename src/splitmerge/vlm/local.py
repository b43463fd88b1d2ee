"""A transformers image-text-to-text model from a local folder, asked about a few images with one prompt.

The folder is what ``save_pretrained`` writes for a model and its processor (config, weights, tokenizer, image
processor, chat template): Qwen2-VL, Qwen2.5-VL, InternVL (``-hf``), LLaVA, SmolVLM and others that
``AutoModelForImageTextToText`` knows. Nothing is downloaded (``local_files_only``). Decoding is greedy, so the
same images and prompt always give the same answer on the same machine.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from .http import VLMError

DEFAULT_MAX_NEW_TOKENS = 256


class LocalVLM:
    """Loads the model and processor in `model_path` once; `ask` answers a prompt about images.

    Args:
        model_path: a local folder written by ``save_pretrained`` (model and processor).
        device: "cpu", "cuda", "cuda:1", ...; default CUDA when available, else CPU.
        max_new_tokens: the longest answer, in tokens.
        dtype: a torch dtype name ("float32", "bfloat16", ...); default bfloat16 on CUDA (float16 where bfloat16 is
            unsupported), float32 on CPU.
    """

    def __init__(self, model_path: str | os.PathLike, device: str | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, dtype: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise VLMError(f"{path}: not a model folder (no config.json); expected a folder written by "
                           "save_pretrained, e.g. a downloaded Qwen2-VL-2B-Instruct")
        if max_new_tokens < 1:
            raise VLMError(f"max_new_tokens {max_new_tokens!r}: must be at least 1")
        self.path = path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = getattr(torch, dtype, None) if dtype else _default_dtype(torch, self.device)
        if not isinstance(self.dtype, torch.dtype):
            raise VLMError(f"dtype {dtype!r}: not a torch dtype name (float32, bfloat16, float16)")
        self.max_new_tokens = int(max_new_tokens)
        try:
            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=self.dtype)
        except (OSError, ValueError, TypeError, AttributeError, KeyError, ImportError, RuntimeError) as error:
            hint = ""
            if importlib.util.find_spec("torchvision") is None:
                hint = " (this model's processor may need torchvision: pip install torchvision)"
            raise VLMError(f"{path}: cannot load an image-text-to-text model and processor: "
                           f"{' '.join(str(error).split())[:300]}{hint}") from error
        self.model = model.to(self.device).eval()

    def ask(self, prompt: str, images: list) -> str:
        """The model's answer (prompt and special tokens removed) to `prompt` about `images`, each an (H, W, 3)
        uint8 RGB array or a PIL image, shown in order before the prompt in one user turn."""
        import torch
        from PIL import Image

        pictures = [Image.fromarray(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
                    for image in images]
        content = [{"type": "image"} for _ in pictures] + [{"type": "text", "text": prompt}]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                  add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], images=pictures or None, return_tensors="pt")
        inputs = {name: value.to(self.device) if hasattr(value, "to") else value for name, value in inputs.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                         pad_token_id=self._pad_token_id(tokenizer))
        answer = output[:, inputs["input_ids"].shape[1]:]  # decoder-only: the prompt comes back first
        return tokenizer.batch_decode(answer, skip_special_tokens=True)[0].strip()

    def _pad_token_id(self, tokenizer) -> int | None:
        generation = self.model.generation_config
        if generation.pad_token_id is not None:
            return generation.pad_token_id
        if tokenizer.pad_token_id is not None:
            return tokenizer.pad_token_id
        eos = generation.eos_token_id
        return eos[0] if isinstance(eos, list) else eos


def _default_dtype(torch, device):
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
