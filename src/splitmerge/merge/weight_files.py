"""Whether every weight file a Composer needs is there, checked before any is loaded.

A paper-scale Composer loads a 5B transformer (minutes), a VAE and a T5 text encoder. Each is a local folder
(nothing is downloaded), and a missing or pickle-only one must be named before the first of them loads, not after
the transformer has (the VAE) or at the first forward pass (the T5). Only safetensors count: weights are never
read from pickles.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingFileError, OptionError
from .random_weights import is_random, parse

TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
WEIGHT_REFERENCES = ("codec", "text_encoder_path", "base")   # `ComposerConfig` fields naming weights folders


def expand_variables(text: str, name: str | None = None) -> str:
    """`text` with its environment variables (``$SPLITMERGE_WAN/vae``) expanded; an unset one is a one-line error
    that names it (and `name`, what the text is, default the text itself)."""
    expanded = os.path.expandvars(text)
    if "$" in expanded:
        missing = expanded[expanded.index("$"):].split("/")[0].strip("${}")
        raise OptionError(f"{name or repr(text)}: set the environment variable {missing} (a local weights folder)")
    return expanded


def resolve(reference: str | os.PathLike | None) -> Path | None:
    """The folder a weights reference names: environment variables (`expand_variables`) and ``~`` expanded.
    Configs and ``composer.json`` keep the reference itself, so a model moves between machines that set the same
    variables. None stays None."""
    if reference is None:
        return None
    return Path(os.path.expanduser(expand_variables(str(reference))))


def _safetensors(folder: Path, what: str) -> None:
    """A one-line error unless `folder` holds a config.json and at least one .safetensors file (a ``random:``
    reference names no folder: `merge.random_weights` checks its own)."""
    if is_random(folder):
        parse(folder)
        return
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder (the {what})")
    if not (folder / "config.json").is_file():
        raise MissingFileError(f"{folder}: no config.json (the {what})")
    if not any(folder.glob("*.safetensors")):
        raise MissingFileError(f"{folder}: no .safetensors weights (the {what}; pickles such as .bin are never "
                               "loaded)")


def check_weights(config, pretrained: str | Path | None = None) -> None:
    """Every local weights folder `config` (a `ComposerConfig`) and `pretrained` (a transformer folder to widen,
    or a LoRA Composer's base; references as `resolve` reads them) name: the transformer's, the VAE's, the T5 text
    encoder's and its tokenizer. Raises `MissingFileError` naming the first that is missing; loads nothing."""
    if pretrained is not None:
        _safetensors(resolve(pretrained), "pretrained transformer")
    codec = config.codec or {}
    if codec.get("kind") == "vae" and codec.get("path"):
        _safetensors(resolve(codec["path"]), "VAE")
    if config.text_encoder == "t5" and config.text_encoder_path:
        folder = resolve(config.text_encoder_path)
        if is_random(folder):
            return _safetensors(folder, "T5 text encoder")
        model = folder / "text_encoder" if (folder / "text_encoder").is_dir() else folder
        tokenizer = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        _safetensors(model, "T5 text encoder")
        if not any((tokenizer / name).is_file() for name in TOKENIZER_FILES):
            raise MissingFileError(f"{tokenizer}: no tokenizer ({', '.join(TOKENIZER_FILES)}) for the T5 text "
                                   "encoder")
