"""Paper-scale architectures with random weights, so a machine without the downloads can run the whole recipe.

``random_init: true`` (``splitmerge train --random-init``) builds a GPU preset's transformer, VAE and T5 text
encoder at full size from the configs bundled in ``configs/architectures/<architecture>/`` (copied from the
published diffusers/transformers ``config.json`` files of THUDM/CogVideoX-5b-I2V and
Wan-AI/Wan2.1-T2V-1.3B-Diffusers), with random weights and a local byte-level tokenizer: nothing is downloaded. It
is a smoke test of memory, speed and the code paths (``benchmarks/gpu_smoke.sh``), never a model to compose with.

A random part is named by a weights reference ``random:<architecture>/<part>`` or, at a reduced depth (CPU smoke
tests), ``random:<architecture>/<part>@<layers>``; ``<part>`` is ``transformer``, ``vae`` or ``text_encoder``.
Its weights are drawn from a fixed seed per part, so a resumed run (and `Composer.from_pretrained`, which rebuilds
the frozen VAE and text encoder) gets the very same ones.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import torch

from ..errors import OptionError

PREFIX = "random:"
ARCHITECTURES = Path(__file__).resolve().parent.parent / "configs" / "architectures"
PARTS = ("transformer", "vae", "text_encoder")
_REFERENCE = re.compile(r"^random:(?P<architecture>[a-z0-9._-]+)(/(?P<part>[a-z_]+))?(@(?P<layers>\d+))?$")


def is_random(reference) -> bool:
    return str(reference).startswith(PREFIX)


def reference(architecture: str, part: str | None = None, layers: int | None = None) -> str:
    """The weights reference of a random part (`part` None: the architecture's folder, as a text encoder path)."""
    text = PREFIX + architecture + (f"/{part}" if part else "")
    return text + (f"@{int(layers)}" if layers else "")


def parse(text) -> tuple[str, str | None, int | None]:
    """(architecture, part or None, layers or None) of a ``random:`` reference; a one-line error when it names no
    bundled architecture or part."""
    match = _REFERENCE.match(str(text))
    known = sorted(path.name for path in ARCHITECTURES.iterdir() if path.is_dir())
    if match is None or match["architecture"] not in known:
        raise OptionError(f"{text}: not a random architecture (random:NAME[/PART][@LAYERS], NAME one of "
                          f"{', '.join(known)})")
    part = match["part"]
    if part is not None and part not in PARTS:
        raise OptionError(f"{text}: part {part!r}: expected one of {', '.join(PARTS)}")
    layers = int(match["layers"]) if match["layers"] else None
    if layers is not None and layers < 1:
        raise OptionError(f"{text}: the layer count must be at least 1")
    return match["architecture"], part, layers


def architecture_config(architecture: str, part: str) -> dict:
    """The bundled ``config.json`` of `part` (without its ``_class_name``/``architectures`` bookkeeping)."""
    record = json.loads((ARCHITECTURES / architecture / f"{part}.json").read_text())
    return {key: value for key, value in record.items() if key not in ("_class_name", "architectures")}


def class_name(architecture: str, part: str) -> str:
    record = json.loads((ARCHITECTURES / architecture / f"{part}.json").read_text())
    return record.get("_class_name") or record["architectures"][0]


def _built_seeded(text: str, build):
    """`build()` with the random generator seeded from `text` (and put back after): each part's random weights are
    the same every time they are built."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(text.encode()))
        return build()


def random_transformer(text: str, overrides: dict | None = None) -> torch.nn.Module:
    """The diffusers transformer `text` (``random:<architecture>/transformer[@layers]``) names, its bundled config
    updated by `overrides` (a Composer's ``backbone_config``), with random weights."""
    import diffusers

    architecture, _, layers = parse(text)
    settings = {**architecture_config(architecture, "transformer"), **(overrides or {})}
    if layers:
        settings["num_layers"] = layers
    if "patch_size" in settings and isinstance(settings["patch_size"], list):
        settings["patch_size"] = tuple(settings["patch_size"])
    return _built_seeded(text, lambda: getattr(diffusers, class_name(architecture, "transformer"))(**settings))


def random_vae(text: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The diffusers video VAE of the architecture `text` names, at full size, random weights."""
    import diffusers

    architecture, _, _ = parse(text)
    vae = _built_seeded(reference(architecture, "vae"), lambda: getattr(diffusers, class_name(architecture, "vae"))(
        **architecture_config(architecture, "vae")))
    return vae if dtype == torch.float32 else vae.to(dtype)


def random_text_encoder(text: str, dtype: torch.dtype = torch.float32):
    """(T5 or UMT5 encoder with random weights, a local tokenizer) of the architecture `text` names; ``@layers``
    cuts the encoder's depth."""
    import transformers

    architecture, _, layers = parse(text)
    settings = architecture_config(architecture, "text_encoder")
    if layers:
        settings["num_layers"] = layers
    kind = class_name(architecture, "text_encoder")
    config_class = transformers.UMT5Config if kind.startswith("UMT5") else transformers.T5Config
    def build():
        with torch.device("meta"):   # laid out without memory, then drawn here: transformers' own initialisation
            model = getattr(transformers, kind)(config_class(**settings))   # takes a minute for UMT5's vocabulary
        return _drawn(model.to_empty(device="cpu"))

    model = _built_seeded(reference(architecture, "text_encoder", layers), build)
    model = model if dtype == torch.float32 else model.to(dtype)
    return model.eval(), byte_tokenizer(settings["vocab_size"])


@torch.no_grad()
def _drawn(model: torch.nn.Module) -> torch.nn.Module:
    """T5's initialisation, drawn fast: norm scales 1, embeddings (tokens, relative positions) N(0, 1), each
    projection N(0, 1 / fan_in), so activations keep their scale through the layers."""
    for name, parameter in model.named_parameters():
        if parameter.dim() == 1:
            parameter.fill_(1.0)
        elif "shared" in name or "embed" in name or "relative_attention_bias" in name:
            parameter.normal_(0.0, 1.0)
        else:
            parameter.normal_(0.0, parameter.shape[1] ** -0.5)
    return model


def byte_tokenizer(vocab_size: int):
    """A tokenizer made here, needing no files: each UTF-8 byte of a caption is one token (ids 3-258; 0 pad, 1 end
    of text as T5's, 2 unknown), then the end token. Random weights read nothing into the ids; they only need to
    be in the vocabulary, as real captions' would be."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    symbols = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{s: 3 + i for i, s in enumerate(sorted(symbols))}}
    if len(vocab) > vocab_size:
        raise OptionError(f"a vocabulary of {vocab_size} cannot hold the {len(vocab)} byte tokens")
    model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                            use_regex=False),
                                                   pre_tokenizers.Split("", "isolated")])
    model.decoder = decoders.ByteLevel()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
