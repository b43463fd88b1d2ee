"""The weight files a Composer is saved as, written from its weights by parameter name and read back by name.

A Composer folder (`Composer.save_pretrained`) holds what training changes:
- a full fine-tune: ``transformer/`` as diffusers lays a model out (``config.json``,
  ``diffusion_pytorch_model.safetensors``, or 10 GB shards and their ``.index.json``);
- a LoRA fine-tune: ``adapter/adapter_model.safetensors`` (PEFT's names) and ``input_projection.safetensors``;
- ``reader.safetensors`` / ``light_reader.safetensors`` for its scene readers.

The weights are given by the Composer's parameter names (`Composer.state_dict()`, or the whole weights gathered
from a sharded Composer, whose own are slices: `merge.checkpoint.gather_weights`), and `saved_weights` reads a
folder back under the same names, so a checkpoint restores into a sharded or unsharded Composer alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

TRANSFORMER = "transformer"        # the diffusers folder (its files are named by diffusers)
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SHARD_SIZE = "10GB"                # diffusers' default for save_pretrained


def _projection_prefix(composer) -> str:
    """The Composer name prefix of the backbone's input projection (the layer LoRA widens and trains)."""
    from .backbones import input_projection

    layer = input_projection(composer.transformer, composer.config.backbone)
    name = next(name for name, module in composer.transformer.named_modules() if module is layer)
    return f"transformer.{name}."


def _adapter_names(composer) -> dict[str, str]:
    """PEFT adapter file key -> Composer parameter name, as PEFT itself names them (each name is passed through
    `get_peft_model_state_dict` tagged with its index, so its renaming rules are PEFT's, not copied here)."""
    from peft import get_peft_model_state_dict

    names = [name for name, _ in composer.transformer.named_parameters()]
    tagged = get_peft_model_state_dict(composer.transformer,
                                       state_dict={name: torch.tensor(i) for i, name in enumerate(names)})
    return {key: f"transformer.{names[int(tag)]}" for key, tag in tagged.items()}


def file_of(composer) -> Callable[[str], tuple[str, str] | None]:
    """A function: Composer weight name -> (file, key in it), or None for what is not saved (a LoRA's frozen
    base). `file` is relative to the Composer folder; ``transformer`` is the diffusers folder."""
    readers = [f"{name}." for name in composer.readers()]
    lora = bool(composer.config.lora_rank)
    adapter = {name: key for key, name in _adapter_names(composer).items()} if lora else {}
    projection = _projection_prefix(composer) if lora else None

    def locate(name: str) -> tuple[str, str] | None:
        for prefix in readers:
            if name.startswith(prefix):
                return f"{prefix}safetensors", name[len(prefix):]
        if not lora:
            return (TRANSFORMER, name[len("transformer."):]) if name.startswith("transformer.") else None
        if name in adapter:
            return "adapter/adapter_model.safetensors", adapter[name]
        if name.startswith(projection):
            return "input_projection.safetensors", name[len(projection):]
        return None

    return locate


def split_into_files(composer, weights: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """`weights` (Composer names) grouped by the file each is saved in, under the key it has there."""
    locate, files = file_of(composer), {}
    for name, value in weights.items():
        place = locate(name)
        if place is not None:
            files.setdefault(place[0], {})[place[1]] = value
    return files


def write_transformer(transformer: torch.nn.Module, weights: dict[str, torch.Tensor], folder: Path) -> None:
    """A diffusers model folder from `weights` (the transformer's own names): its config and safetensors, in
    10 GB shards with an index when larger, as `ModelMixin.save_pretrained` writes it (which would read the
    module's own weights, slices under FSDP)."""
    from huggingface_hub import save_torch_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    transformer.save_config(folder)
    save_torch_state_dict({key: _own_storage(value.detach()) for key, value in weights.items()}, folder,
                          filename_pattern=WEIGHTS_NAME.replace(".safetensors", "{suffix}.safetensors"),
                          max_shard_size=SHARD_SIZE)


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, copied when it is a view of a larger storage (a gathered shard buffer): safetensors refuses to
    write part of a storage."""
    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    return tensor if whole and tensor.is_contiguous() else tensor.clone(memory_format=torch.contiguous_format)


def _transformer_files(folder: Path) -> list[Path]:
    index = folder / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / WEIGHTS_NAME]


def saved_weights(composer, folder: str | Path, shapes_only: bool = False) -> dict:
    """The weights saved in the Composer folder `folder`, by Composer name: tensors (CPU), or with `shapes_only`
    their shapes read from the file headers (cheap: what every process checks before a restore)."""
    from safetensors import safe_open

    folder = Path(folder)
    locate = file_of(composer)
    names = {}
    for name, _ in composer.state_dict().items():
        place = locate(name)
        if place is not None:
            names.setdefault(place[0], {})[place[1]] = name
    found = {}
    for file, by_key in names.items():
        paths = _transformer_files(folder / TRANSFORMER) if file == TRANSFORMER else [folder / file]
        for path in paths:
            with safe_open(str(path), "pt") as opened:
                for key in opened.keys():
                    name = by_key.get(key, f"{file}:{key}")   # an unknown key keeps a name that cannot match
                    found[name] = tuple(opened.get_slice(key).get_shape()) if shapes_only else opened.get_tensor(key)
    return found
