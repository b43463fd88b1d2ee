"""The Composer's video transformers, from diffusers, behind one calling convention.

`build_backbone(kind, **config)` makes a ``WanTransformer3DModel`` ("wan") or ``CogVideoXTransformer3DModel``
("cogvideox"); `run_backbone` calls either with (B, C, T, H, W) latents, a (B,) timestep and (B, L, D) text and
returns (B, C_out, T, H, W); `widen_input` grows a (pretrained) backbone's input projection to more channels:
the existing weights are kept, and the new channels start as a copy of the weights of chosen existing channels
(the paper: the pretrained image-conditioning channels) or at zero.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import OptionError

KINDS = ("wan", "cogvideox")


def build_backbone(kind: str, **config) -> nn.Module:
    if kind == "wan":
        from diffusers import WanTransformer3DModel

        return WanTransformer3DModel(**config)
    if kind == "cogvideox":
        from diffusers import CogVideoXTransformer3DModel

        return CogVideoXTransformer3DModel(**config)
    raise OptionError(f"backbone {kind!r}: expected one of {', '.join(KINDS)}")


def load_backbone(kind: str, folder, overrides: dict | None = None) -> nn.Module:
    """The pretrained transformer in `folder` (safetensors only); a ``random:`` reference builds the bundled
    full-size architecture with random weights instead, its config updated by `overrides` (`merge.random_weights`)."""
    from .random_weights import is_random, random_transformer

    if is_random(folder):
        if kind not in KINDS:
            raise OptionError(f"backbone {kind!r}: expected one of {', '.join(KINDS)}")
        return random_transformer(str(folder), overrides)
    if kind == "wan":
        from diffusers import WanTransformer3DModel as cls
    elif kind == "cogvideox":
        from diffusers import CogVideoXTransformer3DModel as cls
    else:
        raise OptionError(f"backbone {kind!r}: expected one of {', '.join(KINDS)}")
    if not list(Path(folder).glob("diffusion_pytorch_model*.safetensors")):
        raise OptionError(f"{folder}: no diffusion_pytorch_model*.safetensors (weights are loaded from safetensors "
                          "only, never from pickles such as .bin)")
    return cls.from_pretrained(folder, use_safetensors=True)


def compile_blocks(model: nn.Module) -> bool:
    """Compile each of the transformer's blocks in place (``nn.Module.compile``: TorchInductor fuses the
    elementwise work between the matmuls and attention; weights and their names are unchanged, so saving, the
    EMA and resuming are unaffected). Measured on the 2-core CPU: a cpu-small training step 7-13% faster under
    bf16 autocast (slower in fp32), after a first step of 24 s (8 s with Inductor's cache warm; README,
    benchmark table). Returns False, changing nothing, where the machine has no C++ compiler for Inductor."""
    import shutil

    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        return False
    blocks = getattr(model, "blocks", None)
    for block in blocks if blocks is not None else model.transformer_blocks:
        block.compile()
    return True


def input_projection(model: nn.Module, kind: str) -> nn.Module:
    """The layer that takes the input channels (a Conv3d for Wan, a Conv2d or Linear for CogVideoX)."""
    return model.patch_embedding if kind == "wan" else model.patch_embed.proj


def cogvideox_rotary(model: nn.Module, frames: int, height: int, width: int, device
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The 3-D rotary position embeddings (cos, sin) a CogVideoX transformer with
    ``use_rotary_positional_embeddings`` (CogVideoX-5B and its I2V) needs for latents of `frames` x `height` x
    `width`, built as diffusers' CogVideoX pipelines build them (`_prepare_rotary_positional_embeddings`: 1.0's
    grid resized and cropped into the config's sample grid, 1.5's sliced); None for a transformer without them."""
    config = model.config
    if not config.use_rotary_positional_embeddings:
        return None
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    patch, patch_t = config.patch_size, config.patch_size_t
    grid = (height // patch, width // patch)
    base_height, base_width = config.sample_height // patch, config.sample_width // patch
    if patch_t is None:
        return get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim,
                                       crops_coords=get_resize_crop_region_for_grid(grid, base_width, base_height),
                                       grid_size=grid, temporal_size=frames, device=device)
    return get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=None, grid_size=grid,
                                   temporal_size=(frames + patch_t - 1) // patch_t, grid_type="slice",
                                   max_size=(base_height, base_width), device=device)


def run_backbone(model: nn.Module, kind: str, latents: torch.Tensor, timestep: torch.Tensor,
                 text: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) latents -> (B, C_out, T, H, W) prediction. A CogVideoX transformer gets its rotary
    position embeddings (`cogvideox_rotary`) and, when its config has one, the I2V offset embedding at the
    pipelines' value (2.0)."""
    if kind == "wan":
        return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]
    frames, height, width = latents.shape[2:]
    extra = {"image_rotary_emb": cogvideox_rotary(model, frames, height, width, latents.device)}
    if getattr(model.config, "ofs_embed_dim", None):
        extra["ofs"] = latents.new_full((latents.shape[0],), 2.0)
    out = model(hidden_states=latents.transpose(1, 2), encoder_hidden_states=text, timestep=timestep,
                return_dict=False, **extra)[0]
    return out.transpose(1, 2)


def widen_input(model: nn.Module, kind: str, channels: int, copy_from: list[int | None] | None = None) -> None:
    """Give `model` an input projection of `channels` input channels in place.

    Channel i < old count keeps its weights; new channel j takes the weights of channel ``copy_from[j - old]``
    when given (e.g. the pretrained image-conditioning channels), else (no list, or None there) zero: the new
    input starts silent. The
    config's ``in_channels`` is updated so `save_pretrained` round-trips.
    """
    layer = input_projection(model, kind)
    old = layer.weight.shape[1] if not isinstance(layer, nn.Linear) else layer.in_features
    if channels < old:
        raise OptionError(f"widen_input: {channels} channels is fewer than the {old} the backbone has")
    extra = channels - old
    if copy_from is not None and len(copy_from) != extra:
        raise OptionError(f"widen_input: copy_from names {len(copy_from)} channels for {extra} new ones")
    with torch.no_grad():
        if isinstance(layer, nn.Linear):  # CogVideoX 1.5 patchifies into a Linear over (C * p * p * p_t)
            raise OptionError("widen_input: linear patch projections (CogVideoX 1.5) are not supported yet")
        shape = list(layer.weight.shape)
        shape[1] = channels
        weight = layer.weight.new_zeros(shape)
        weight[:, :old] = layer.weight
        for offset, source in enumerate(copy_from or []):
            if source is not None:
                weight[:, old + offset] = layer.weight[:, source]
        conv = type(layer)(channels, layer.out_channels, kernel_size=layer.kernel_size, stride=layer.stride,
                           padding=layer.padding, bias=layer.bias is not None)
        conv.weight.copy_(weight)
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    if kind == "wan":
        model.patch_embedding = conv
    else:
        model.patch_embed.proj = conv
    model.register_to_config(in_channels=channels)
