"""Captions' text features kept on disk, so a training run encodes each caption once.

A clip's caption is fixed, and a paper-scale text encoder (T5-XXL, UMT5) is a large model to run every step for
the same few hundred tokens. `TextCache` stores each caption's (L, D) features as one safetensors file, named by a
hash of the caption and of what encoded it (the encoder, its folder and the token length), in the dtype the
encoder gave them (so a cached feature is the very tensor an uncached step would use). Files are written
atomically: several ranks may write the same one at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch

from ..atomic import atomic_file


class TextCache:
    """Text features by caption under `folder`; `key` names what encodes them (a change of encoder or length
    starts a new set)."""

    def __init__(self, folder: str | Path, key: str):
        self.key = key
        self.folder = Path(folder) / hashlib.sha1(key.encode()).hexdigest()[:16]
        self.encoded = 0   # captions this cache had to encode (the rest were read)

    def _path(self, caption: str) -> Path:
        return self.folder / f"{hashlib.sha1(caption.encode()).hexdigest()}.safetensors"

    def features(self, captions: list[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """(B, L, D) features of `captions`, read from disk; the ones not there yet are encoded (`encode`: a list
        of N captions -> (N, L, D)), written, then read like the rest."""
        from safetensors.torch import load_file, save_file

        missing = sorted({caption for caption in captions if not self._path(caption).is_file()})
        if missing:
            encoded = encode(missing)
            for caption, row in zip(missing, encoded, strict=True):
                with atomic_file(self._path(caption)) as temporary:
                    save_file({"features": row.detach().cpu().contiguous()}, str(temporary))
            self.encoded += len(missing)
        return torch.stack([load_file(str(self._path(caption)))["features"] for caption in captions])
