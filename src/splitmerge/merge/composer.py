"""The Composer: a diffusers video transformer that rebuilds a clip from a transformed foreground layer, the
background and the caption (multi-layer fusion by channel concatenation, the paper's section 3).

Inputs at latent resolution, concatenated on the channel axis (`ComposerConfig.matte_channel` adds the last):

    [ noisy target (C) | transformed foreground, premultiplied (C) | background (C) | matte (1) ]  -> backbone -> C

Outputs (``output``): ``"direct"``, the backbone's output is the objective's target (the paper, and the way a
pretrained backbone keeps its behaviour); or ``"layer"``, the backbone predicts a subject layer and its matte in
latent space (C + ``codec.matte_channels`` channels) and the clean estimate is that layer over the given
background, x0 = a * layer + (1 - a) * background with a = sigmoid(raw + `MATTE_OFFSET`). The background then
comes through exactly wherever the matte is empty (a lesson of PROBES.md: a small transformer trained from scratch
on a CPU does not learn to reproduce a background, and sampling noise leaks into it); the model spends itself on
the subject, and its matte is the result's. ``"warp"`` (pixel codec only) goes further: the layer is the
*input* layer moved, scaled, mirrored and re-tinted by per-frame parameters the backbone votes for
(`merge.warp`), so the subject's pixels are kept by construction and the model learns only where it goes and how
its colour fits. Layer and warp outputs train on the x0 error (flow noise levels) against the clean background
(and, for warp, the clean foreground is what is moved) and sample with the flow scheduler through
v = (x_s - x0) / s.

Objectives (``objective``): ``"flow"`` (rectified flow matching: x_s = (1 - s) x0 + s e, the model predicts
e - x0; sampled with diffusers' FlowMatchEulerDiscreteScheduler) or ``"v"`` (v-prediction on a DDPM schedule, as
CogVideoX trains; sampled with DDIM). Loss: the identity-preservation loss L = a L_fg + (1 - a) L_bg, each term the
squared error averaged over its own region of the *untransformed* matte max-pooled to latent resolution (the
target's subject is where the original clip has it); ``identity_loss=False`` gives the plain mean (ablation).

Shapes: pixels (B, 3, T, H, W) in [-1, 1]; mattes (B, 1, T, H, W) in [0, 1]; captions a list of B strings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from ..atomic import atomic_dir
from ..config_types import check_field_types
from ..errors import MissingFileError, OptionError
from .backbones import build_backbone, load_backbone, run_backbone
from .codecs import build_codec
from .weight_files import check_weights, resolve
from .reader import EVEN_LIGHT, ODD_LIGHT, SceneReader
from .appearance import appearance_error, appearance_gradient_only, geometry_gradient_only
from .depth_law import depth_law_error, matte_extent
from .light_fit import light_error
from .subject_stats import statistics_error
from .warp import (DRAWN_CHANNELS, POOL, WARP_CHANNELS, drawn_values, effects_gain, inverse_error, inverse_targets,
                   mirror_error, placement_error, pool_parameters, relight_gain, shadow_error, warp_layer,
                   zero_output)

TEXT_DIM = {"minilm": 384}
MATTE_OFFSET = -3.0   # a layer's matte starts near empty (sigmoid(-3) = 0.05): the background shows until learnt
MATTE_FLOOR = 0.02    # sampled matte values below this are exactly 0, so the background there is exact


def _default_backbone() -> dict:
    return {"patch_size": [1, 2, 2], "num_attention_heads": 4, "attention_head_dim": 32, "num_layers": 4,
            "ffn_dim": 512, "freq_dim": 64, "text_dim": 384, "rope_max_seq_len": 256}


@dataclass
class ComposerConfig:
    """Everything that defines a Composer (saved as ``composer.json``)."""

    backbone: str = "wan"
    backbone_config: dict = field(default_factory=_default_backbone)
    codec: dict = field(default_factory=lambda: {"kind": "pixel", "spatial": 4, "temporal": 1})
    text_encoder: str = "minilm"      # "minilm" (the pip package's MiniLM), "t5" (a local T5/UMT5 folder:
    text_encoder_path: str | None = None  # the backbone's own, e.g. CogVideoX's or Wan's) or "none" (zeros)
    text_length: int = 32
    objective: str = "flow"           # "flow" or "v"
    output: str = "direct"            # "direct" (the objective's target), "layer" (subject layer + matte) or
    #                                   "warp" (the input layer moved and re-tinted; pixel codec)
    matte_channel: bool = True
    identity_loss: bool = True
    identity_weight: float = 0.5      # a in L = a L_fg + (1 - a) L_bg
    placement_weight: float = 0.0     # layered outputs: + w * the blurred matte error (`placement_error`)
    mirror_weight: float = 0.0        # warp: + w * the mirror logit's cross-entropy against the known flip
    effects_layer: bool = False       # warp: also draw the subject's effects on the background (its cast shadow)
    relight: bool = False             # warp: also draw a relighting ramp across the moved subject
    effects_weight: float = 0.0       # effects layer: + w * its shadow's error against the true effects
    inverse_weight: float = 0.0       # warp: + w * the map's error against the augmentation's exact inverse
    appearance_weight: float = 0.0    # warp: > 0 learns colour, light and shadow on the true geometry only:
    #                                   + w * `appearance_error`, the pixel error trains the geometry alone
    #                                   (merge/appearance.py)
    statistics_weight: float = 0.0    # warp: + w * the moved subject's colour statistics (mean and log spread per
    #                                   channel over its own pixels) against the truth's subject's: placement-free,
    #                                   so a washed-out subject costs (merge/subject_stats.py)
    reader_width: int = 0             # warp: a `SceneReader` of this width votes on the map from the clean
    #                                   inputs alone (0: none; merge/reader.py)
    reader_symmetric: bool = False    # its mirror vote odd under mirroring the subject (merge/reader.py)
    reader_light_weight: float = 0.0  # drawn: + w * the reader's light against the light the truth's effects
    #                                   show (merge/light_fit.py); > 0 also reads the scene mirrored (its lean odd)
    reader_depth_weight: float = 0.0  # + w * the reader's map against the ground's depth law where a clip knows
    #                                   it (synthetic scenes; merge/depth_law.py)
    light_reader_width: int = 0       # > 0: the light is voted by a second `SceneReader` of this width alone (its
    #                                   own features; the first then votes the map and mirror only)
    mirror_margin: float | None = None  # warp sampling: None mirrors the layer when the first step's logit is
    #                                   > 0; a number when its odd part (the logit minus the mirrored input's,
    #                                   halved: no learnt flip prior) is > the margin (`Composer.mirror_logit`)
    caption_dropout: float = 0.1
    flow_shift: float = 3.0           # flow: training noise levels and sampling steps pushed towards noise
    noise_levels: str = "logit-normal"  # flow training draws: "logit-normal" (SD3/Wan) or "uniform" in (0, 1)
    train_timesteps: int = 1000
    gradient_checkpointing: bool = False  # recompute each transformer block's activations in the backward pass
    #                                   (diffusers' checkpointing: memory of one block's activations, not all)
    lora_rank: int | None = None      # LoRA on the attention projections instead of a full fine-tune
    lora_targets: list = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    base: str | None = None           # the pretrained transformer folder a LoRA Composer was widened from
    sample_frames: int | None = None  # the clip length and (H, W) it was trained at (recorded by training;
    sample_size: list | None = None   # inference runs there, in windows over time)

    def __post_init__(self):
        check_field_types(self, "Composer config")
        if self.objective not in ("flow", "v"):
            raise OptionError(f"objective {self.objective!r}: expected flow or v")
        if self.noise_levels not in ("logit-normal", "uniform"):
            raise OptionError(f"noise_levels {self.noise_levels!r}: expected logit-normal or uniform")
        if self.output not in ("direct", "layer", "warp"):
            raise OptionError(f"output {self.output!r}: expected direct, layer or warp")
        if self.output != "direct" and self.objective != "flow":
            raise OptionError(f"output {self.output} trains with the flow objective only")
        if self.output == "warp" and self.codec.get("kind", "pixel") != "pixel":
            raise OptionError("output warp moves pixels: it needs the pixel codec")
        if self.reader_width and self.output != "warp":
            raise OptionError("reader_width: a scene reader votes on a warp map (output warp)")
        if self.reader_width < 0:
            raise OptionError(f"reader_width {self.reader_width}: must be >= 0")
        if self.reader_symmetric and not self.reader_width:
            raise OptionError("reader_symmetric: needs a scene reader (reader_width > 0)")
        if self.reader_light_weight and (self.reader_light_weight < 0 or not self.reader_width
                                         or not self.effects_layer):
            raise OptionError(f"reader_light_weight {self.reader_light_weight}: a weight >= 0 on a scene reader's "
                              "light (needs reader_width > 0 and effects_layer)")
        if self.reader_depth_weight and (self.reader_depth_weight < 0 or not self.reader_width):
            raise OptionError(f"reader_depth_weight {self.reader_depth_weight}: a weight >= 0 on a scene reader's "
                              "map (needs reader_width > 0)")
        if self.light_reader_width and (self.light_reader_width < 0 or not self.reader_light_weight):
            raise OptionError(f"light_reader_width {self.light_reader_width}: a width >= 0 for a light reader "
                              "(needs reader_light_weight > 0)")
        if self.appearance_weight and (self.output != "warp" or self.appearance_weight < 0):
            raise OptionError(f"appearance_weight {self.appearance_weight}: a weight >= 0 on a warp Composer's "
                              "colour map")
        if self.statistics_weight and (self.output != "warp" or self.statistics_weight < 0):
            raise OptionError(f"statistics_weight {self.statistics_weight}: a weight >= 0 on a warp Composer's "
                              "colour map")
        if self.mirror_margin is not None and (self.output != "warp" or self.mirror_margin < 0):
            raise OptionError(f"mirror_margin {self.mirror_margin}: a margin >= 0 on a warp Composer's mirror logit")
        if self.text_encoder not in ("minilm", "t5", "none"):
            raise OptionError(f"text encoder {self.text_encoder!r}: expected minilm, t5 or none")
        if self.text_encoder == "t5" and not self.text_encoder_path:
            raise OptionError("text encoder t5 needs text_encoder_path (a folder with text_encoder/ and tokenizer/)")
        if not 0 <= self.identity_weight <= 1:
            raise OptionError(f"identity weight {self.identity_weight}: must be in [0, 1]")


def read_config(folder: Path) -> ComposerConfig:
    """The `ComposerConfig` of a saved Composer folder (its ``composer.json``), or a one-line error."""
    record_path = folder / "composer.json"
    if not record_path.is_file():
        raise MissingFileError(f"{folder}: no composer.json (not a saved Composer)")
    try:
        record = json.loads(record_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise OptionError(f"{record_path}: not valid JSON") from None
    if not isinstance(record, dict) or record.pop("format", None) != "splitmerge.composer":
        raise OptionError(f"{record_path}: not a splitmerge Composer")
    record.pop("version", None)
    unknown = sorted(set(record) - {item.name for item in fields(ComposerConfig)})
    if unknown:
        raise OptionError(f"{record_path}: unknown fields {', '.join(unknown)}")
    try:
        return ComposerConfig(**record)
    except OptionError as error:
        raise OptionError(f"{record_path}: {error}") from None


def sampling_autocast(device: torch.device):
    """bf16 autocast for sampling on a GPU (the paper-scale backbones run there in bf16); nothing on a CPU, where
    the CPU presets sample in fp32, as they are measured."""
    import contextlib

    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Composer(nn.Module):
    """See the module docstring. `backbone` may be given (e.g. a pretrained, widened one); else it is built."""

    def __init__(self, config: ComposerConfig | None = None, backbone: nn.Module | None = None, codec=None):
        super().__init__()
        self.config = config or ComposerConfig()
        self.codec = codec or build_codec(self.config.codec)
        channels = self.codec.channels
        self.in_channels = 3 * channels + int(self.config.matte_channel)
        self.out_channels = {"direct": channels, "layer": channels + self.codec.matte_channels,
                             "warp": DRAWN_CHANNELS if self.drawn else WARP_CHANNELS}[self.config.output]
        if backbone is None:
            settings = {**self.config.backbone_config, "in_channels": self.in_channels,
                        "out_channels": self.out_channels}
            if self.config.backbone == "wan":
                settings["patch_size"] = tuple(settings["patch_size"])
            backbone = build_backbone(self.config.backbone, **settings)
            if self.config.output == "warp":
                zero_output(backbone)
        self.transformer = backbone
        self.text_cache = None   # a `merge.text_cache.TextCache` a training run sets: captions encoded once
        if self.config.gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        self.reader = self.light_reader = None
        if self.config.reader_width:
            light = ODD_LIGHT + EVEN_LIGHT if self.config.light_reader_width else ()
            self.reader = SceneReader(self.in_channels - channels, self.out_channels, self.config.reader_width,
                                      tuple(c for c in range(self.out_channels) if c != POOL and c not in light))
        if self.config.light_reader_width:
            self.light_reader = SceneReader(self.in_channels - channels, self.out_channels,
                                            self.config.light_reader_width, ODD_LIGHT + EVEN_LIGHT)
        backbone_settings = self.transformer.config
        self.text_dim = int(getattr(backbone_settings, "text_dim", None) or backbone_settings.text_embed_dim)
        if self.config.text_encoder == "minilm" and self.text_dim != TEXT_DIM["minilm"]:
            raise OptionError(f"backbone text dim {self.text_dim} does not match MiniLM's 384")
        if self.config.lora_rank:
            self._add_lora()

    def _add_lora(self) -> None:
        """Low-rank adapters on the attention projections (PEFT); only they and the (widened) input projection
        train, the rest of the backbone stays frozen."""
        from peft import LoraConfig

        from .backbones import input_projection

        rank = int(self.config.lora_rank)
        self.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=self.config.lora_targets,
                                                init_lora_weights=True))
        for name, parameter in self.transformer.named_parameters():
            parameter.requires_grad_("lora_" in name)
        for parameter in input_projection(self.transformer, self.config.backbone).parameters():
            parameter.requires_grad_(True)

    @classmethod
    def from_backbone(cls, config: ComposerConfig, backbone: nn.Module) -> "Composer":
        """A Composer around a pretrained backbone, its input projection widened to the Composer's channels.

        An image-to-video backbone (inputs [noisy C | image C], like CogVideoX-I2V's 16 + 16) keeps its noisy
        and image weights for [noisy | foreground]; the background's new channels start from the pretrained
        image-conditioning weights (the paper), the matte channel at zero. A text-to-video backbone (C inputs)
        gets all new channels at zero, so training starts from the backbone's own behaviour."""
        from .backbones import input_projection, widen_input

        if config.output != "direct":
            raise OptionError("a pretrained backbone keeps its own output: use output direct")
        codec = build_codec(config.codec)
        channels = codec.channels
        old = input_projection(backbone, config.backbone).weight.shape[1]
        wanted = 3 * channels + int(config.matte_channel)
        if old == 2 * channels:
            copy_from = list(range(channels, 2 * channels)) + [None] * int(config.matte_channel)
        elif old == channels:
            copy_from = None
        else:
            raise OptionError(f"backbone takes {old} input channels; expected {channels} (text-to-video) or "
                              f"{2 * channels} (image-to-video) for this codec")
        widen_input(backbone, config.backbone, wanted, copy_from)
        return cls(config, backbone, codec)

    # ------------------------------------------------------------------------------------------------- inputs

    def encode_text(self, captions: list[str], generator: torch.Generator | None = None,
                    dropout: float = 0.0) -> torch.Tensor:
        """(B, L, D) text features; each caption is dropped (to "") with probability `dropout` (for CFG)."""
        device = next(self.parameters()).device
        if dropout > 0:
            draws = torch.rand(len(captions), generator=generator)
            captions = ["" if float(d) < dropout else c for c, d in zip(captions, draws, strict=True)]
        if self.config.text_encoder == "none":
            return torch.zeros(len(captions), self.config.text_length, self.text_dim, device=device)
        if self.text_cache is not None:
            return self.text_cache.features(captions, lambda missing: self._encode(missing, device)).to(device)
        return self._encode(captions, device)

    def text_cache_key(self) -> str:
        """What encodes this Composer's captions (a `TextCache` key): the encoder, its folder, the token length."""
        return f"{self.config.text_encoder}|{self.config.text_encoder_path}|{self.config.text_length}"

    def _encode(self, captions: list[str], device) -> torch.Tensor:
        """(B, L, D) features of `captions` from the configured text encoder, on `device`."""
        if self.config.text_encoder == "t5":
            from .text import t5_encoder

            folder = str(resolve(self.config.text_encoder_path))
            return t5_encoder(folder, str(device)).tokens(captions, self.config.text_length)
        from .text import default_encoder

        return default_encoder().tokens(captions, self.config.text_length).to(device)

    def conditions(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """(B, 2C [+1], t, h, w): the encoded foreground and background [and the pooled matte]."""
        parts = [self.codec.encode(foreground), self.codec.encode(background)]
        if self.config.matte_channel:
            parts.append(self.codec.matte(alpha) * 2 - 1)
        return torch.cat(parts, dim=1)

    def predict(self, noisy: torch.Tensor, conditions: torch.Tensor, timestep: torch.Tensor,
                text: torch.Tensor, votes: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone's raw output: (B, out_channels, t, h, w), plus the scene reader's `votes` (B, out_channels,
        t, 1, 1; `read_scene`) when there is one (without them, a plain reader's votes on `conditions`; a
        symmetric reader, or one reading the light, also reads mirrored views, which `conditions` lack: it needs
        them given)."""
        if votes is None and (self.config.reader_symmetric or self.config.reader_light_weight):
            raise OptionError("Composer.predict: a scene reader of mirrored views needs its votes (pass read_scene's)")
        raw = run_backbone(self.transformer, self.config.backbone, torch.cat([noisy, conditions], dim=1),
                           timestep, text)
        if self.reader is None:
            return raw
        return raw + (self.reader(conditions) if votes is None else votes).to(raw.dtype)

    def read_scene(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                   conditions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """The scene reader's (votes (B, out_channels, t, 1, 1), cue (B, t)) on these pixel inputs (as
        `conditions`, which may be given), or (None, None) without a reader. With `reader_symmetric` it also reads
        the subject mirrored (over the same background) for its odd mirror vote (merge/reader.py)."""
        if self.reader is None:
            return None, None
        return self.read_views(*self.reader_views(foreground, alpha, background, conditions))

    def read_views(self, conditions: torch.Tensor, mirrored: torch.Tensor | None = None,
                   scene: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The readers' (votes (B, out_channels, t, 1, 1), cue (B, t)) on `reader_views`' views: the scene reader's,
        plus with `light_reader_width` the light reader's light votes (it alone reads the mirrored scene)."""
        if self.light_reader is None:
            return self.reader.read(conditions, mirrored, scene)
        votes, cue = self.reader.read(conditions, mirrored)
        return votes + self.light_reader.read(conditions, None, scene)[0], cue

    def readers(self) -> dict[str, SceneReader]:
        """The Composer's scene readers by the name of their weights file (`reader`, `light_reader`)."""
        return {name: reader for name, reader in (("reader", self.reader), ("light_reader", self.light_reader))
                if reader is not None}

    def reader_views(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                     conditions: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What the scene reader reads of these pixel inputs: their conditions (computed unless given) and, for a
        symmetric reader, those of the subject mirrored over the same background and, with `reader_light_weight`,
        of the whole scene mirrored (else None; merge/reader.py)."""
        if conditions is None:
            conditions = self.conditions(foreground, alpha, background)
        mirrored = scene = None
        if self.config.reader_symmetric:
            mirrored = self.conditions(foreground.flip(-1), alpha.flip(-1), background)
        if self.config.reader_light_weight:
            scene = self.conditions(foreground.flip(-1), alpha.flip(-1), background.flip(-1))
        return conditions, mirrored, scene

    def layer_estimate(self, raw: torch.Tensor, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``layer``: the raw output (B, C + m, t, h, w) read as a layer and its matte, composited over
        the encoded `background` (B, C, t, h, w). Returns (x0 estimate (B, C, ...), matte (B, m, ...) in [0, 1])."""
        channels = self.codec.channels
        layer, matte = raw[:, :channels], torch.sigmoid(raw[:, channels:].float() + MATTE_OFFSET)
        spread = self.codec.expand_matte(matte)
        return spread * layer + (1 - spread) * background, matte

    def warp_estimate(self, raw: torch.Tensor, foreground: torch.Tensor, alpha: torch.Tensor,
                      background: torch.Tensor, hard: bool = False, flip: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``warp``: the input layer moved and re-tinted as the raw output (B, WARP_CHANNELS, t, h, w)
        says (`merge.warp`), over the background; a drawn Composer (`drawn`) also relights the moved layer and
        darkens the background by its effects layer. `foreground` (B, 3, T, H, W) premultiplied and
        `background` in [-1, 1], `alpha` (B, 1, T, H, W). Returns (x0 estimate (B, C, t, h, w), matte (B, 1, T,
        H, W))."""
        layer, matte = self.warp_subject(raw, foreground, alpha, hard, flip)
        plate = (background.float() + 1) / 2
        if self.config.effects_layer:
            plate = plate * effects_gain(matte, drawn_values(raw, foreground.shape[2]))
        picture = layer + (1 - matte) * plate
        return self.codec.encode(picture * 2 - 1), matte

    def warp_subject(self, raw: torch.Tensor, foreground: torch.Tensor, alpha: torch.Tensor, hard: bool = False,
                     flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``warp``: the input layer `foreground` (B, 3, T, H, W) premultiplied in [-1, 1] with `alpha`
        moved, re-tinted (and with `relight` relit) as the raw output says. Returns (layer (B, 3, T, H, W)
        premultiplied in [0, 1], matte (B, 1, T, H, W))."""
        layer, matte = warp_layer(raw, (foreground + 1) / 2, alpha, hard, flip)
        if self.config.relight:
            layer = torch.minimum(layer * relight_gain(matte, drawn_values(raw, foreground.shape[2])), matte)
        return layer, matte

    @property
    def drawn(self) -> bool:
        """Whether the model draws beside its warp (a cast shadow, a relighting): `DRAWN_CHANNELS` outputs."""
        return self.config.effects_layer or self.config.relight

    @property
    def layered(self) -> bool:
        """Whether the model composites a subject layer of its own over the exact background (and so has a
        matte to give): outputs ``layer`` and ``warp``."""
        return self.config.output != "direct"

    def estimator(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                   hard: bool = False, flip: torch.Tensor | None = None):
        """For layered outputs: raw output -> (x0 estimate, matte), over these (clean) pixel inputs. The matte is
        in latent layout for ``layer`` (B, m, t, h, w), in pixels for ``warp`` (B, 1, T, H, W)."""
        if self.config.output == "warp":
            return lambda raw: self.warp_estimate(raw, foreground, alpha, background, hard, flip)
        plate = self.codec.encode(background)
        return lambda raw: self.layer_estimate(raw, plate)

    def matte_pixels(self, matte: torch.Tensor) -> torch.Tensor:
        """An `estimator` matte at pixel resolution, (B, 1, T, H, W)."""
        return matte if self.config.output == "warp" else self.codec.decode_matte(matte)

    # ------------------------------------------------------------------------------------------------- training

    def _noise_level(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """Flow: sigma in (0, 1), logit-normal (as SD3/Wan train; few draws near 0 or 1) or uniform, then
        shifted by `flow_shift` (more weight on noisy levels)."""
        if self.config.noise_levels == "uniform":
            s = torch.rand(batch, generator=generator).clamp(1e-3, 1 - 1e-3)
        else:
            s = torch.sigmoid(torch.randn(batch, generator=generator))
        shift = self.config.flow_shift
        return shift * s / (1 + (shift - 1) * s)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """The training loss of a batch (what `StmDataset` yields, collated; noise on fg/bg already added).

        With a layered output, ``batch["background_clean"]`` and ``batch["foreground_clean"]`` (the inputs before
        the input noise; default: the inputs) are what the layer is composited over and (warp) what it moves;
        over the noised background, the matte would learn to denoise it. `placement_weight` adds the error of
        the model's matte against the truth's, blurred at three scales (a moved subject that misses the truth
        entirely still learns which way to go). `mirror_weight` (warp) adds the mirror logit's cross-entropy
        against the flips recorded in ``batch["transform"]`` (`mirror_error`): learnt only through the soft mix of
        the two warps, the choice settles on the prior (mirror every subject at flip p 0.7). `inverse_weight`
        (warp) adds the map's error against the augmentation's exact inverse (`merge.warp.inverse_error`), and
        `effects_weight` (effects layer) the error of the shadow the true matte casts under the drawn light
        against ``batch["effects"]`` (the true effects, `merge.warp.shadow_error`). `appearance_weight` (warp)
        adds the colour map's error on the true geometry (`merge.appearance.appearance_error`) and stops the
        pixel error's gradient into colour, light and shadow (they would learn to hedge a misplaced subject's
        contrast and a misplaced shadow's darkness). `statistics_weight` (warp) adds the moved subject's colour
        statistics against the truth's subject's, wherever each is (`merge.subject_stats.statistics_error`). A
        scene reader's votes alone
        are also regressed onto the inverse and the flip (`reader_error`).
        Returns {"loss", "loss_fg", "loss_bg"[, "loss_place"][, "loss_mirror"][, "loss_inverse"][,
        "loss_effects"][, "loss_appearance"][, "loss_stats"][, "loss_reader"]} (scalars; the parts are for logging)."""
        device = next(self.parameters()).device
        video = batch["video"].to(device)
        target = self.codec.encode(video)
        conditions = self.conditions(batch["foreground"].to(device), batch["alpha"].to(device),
                                     batch["background"].to(device))
        text = self.encode_text(list(batch["caption"]), generator, self.config.caption_dropout)
        noise = torch.randn(target.shape, generator=generator).to(device)
        count = target.shape[0]
        if self.config.objective == "flow":
            sigma = self._noise_level(count, generator).to(device)
            view = sigma.view(-1, 1, 1, 1, 1)
            noisy = (1 - view) * target + view * noise
            goal, timestep = noise - target, sigma * self.config.train_timesteps
        else:
            scheduler = self._ddpm()
            steps = torch.randint(0, self.config.train_timesteps, (count,), generator=generator)
            noisy = scheduler.add_noise(target, noise, steps.to(device))
            goal, timestep = scheduler.get_velocity(target, noise, steps.to(device)), steps.to(device).float()
        votes, cue = self.read_scene(batch["foreground"].to(device), batch["alpha"].to(device),
                                     batch["background"].to(device), conditions)
        prediction = self.predict(noisy, conditions, timestep, text, votes)
        parts = {}
        if votes is not None and "transform" in batch:
            parts["loss_reader"] = self.reader_error(
                votes, cue, batch["transform"], *video.shape[-2:], batch.get("light"),
                self.depth_inputs(batch["alpha"].to(device), batch.get("ground"), votes.shape[2]))
        if self.config.output == "warp" and self.config.mirror_weight and "transform" in batch:
            level = sigma if self.config.objective == "flow" else timestep / self.config.train_timesteps
            parts["loss_mirror"] = mirror_error(prediction, batch["transform"], level)
        if self.config.output == "warp" and self.config.inverse_weight and "transform" in batch:
            parts["loss_inverse"] = inverse_error(prediction, batch["transform"], *video.shape[-2:])
        if self.config.effects_layer and self.config.effects_weight and "effects" in batch:
            parts["loss_effects"] = shadow_error(prediction, batch["alpha_target"].to(device),
                                                 batch["effects"].to(device))
        clean_foreground = batch.get("foreground_clean", batch["foreground"]).to(device)  # before the input noise
        if self.config.output == "warp" and self.config.statistics_weight:
            layer, matte = self.warp_subject(appearance_gradient_only(prediction), clean_foreground,
                                             batch["alpha"].to(device))
            parts["loss_stats"] = statistics_error(layer, matte, video, batch["alpha_target"].to(device))
        if self.config.output == "warp" and self.config.appearance_weight and "transform" in batch:
            parts["loss_appearance"] = appearance_error(
                prediction, (clean_foreground + 1) / 2, batch["alpha"].to(device), batch["transform"], video,
                batch["alpha_target"].to(device), self.config.relight)
            prediction = geometry_gradient_only(prediction)
        if self.layered:
            estimate = self.estimator(clean_foreground, batch["alpha"].to(device),
                                      batch.get("background_clean", batch["background"]).to(device))
            prediction, matte = estimate(prediction)
            goal = target
            if self.config.placement_weight:
                parts["loss_place"] = placement_error(self.matte_pixels(matte), batch["alpha_target"].to(device))
        error = (prediction.float() - goal.float()).pow(2).mean(dim=1, keepdim=True)  # (B, 1, t, h, w)
        subject = self.codec.matte(batch["alpha_target"].to(device))
        fg = (error * subject).flatten(1).sum(1) / subject.flatten(1).sum(1).clamp(min=1e-6)
        bg = (error * (1 - subject)).flatten(1).sum(1) / (1 - subject).flatten(1).sum(1).clamp(min=1e-6)
        if self.config.identity_loss:
            a = self.config.identity_weight
            loss = (a * fg + (1 - a) * bg).mean()
        else:
            loss = error.mean()
        if "loss_place" in parts:
            loss = loss + self.config.placement_weight * parts["loss_place"]
        weights = {"loss_mirror": self.config.mirror_weight, "loss_inverse": self.config.inverse_weight,
                   "loss_effects": self.config.effects_weight, "loss_appearance": self.config.appearance_weight,
                   "loss_stats": self.config.statistics_weight, "loss_reader": 1.0}
        for name, weight in weights.items():
            if name in parts:
                loss = loss + weight * parts[name]
        return {"loss": loss, "loss_fg": fg.mean().detach(), "loss_bg": bg.mean().detach(),
                **{key: value.detach() for key, value in parts.items()}}

    def reader_error(self, votes: torch.Tensor, cue: torch.Tensor, transforms: list[dict], height: int,
                     width: int, light: dict[str, torch.Tensor] | None = None,
                     depth: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The scene reader's own votes (B, C, t, 1, 1) and cue (B, t) against the augmentation's exact inverse
        and flip: a map of one cell pools to itself, so `inverse_error` and `mirror_error` (unweighted: the reader
        sees no noisy draft, every level teaches it alike) read the votes as a map; the cue is regressed onto the
        unmirrored shift b_x of every sample (merge/reader.py). With `reader_light_weight` and `light` (the light
        the truth's effects show, `merge.light_fit.fit_light`, each (B, T)), also its light votes against that
        (`light_error`): the light is the scene's (its props' shadows, its lit sides), which the reader sees.
        With `reader_depth_weight` and `depth` (the input matte's extent (B, t, 2) at the votes' frames and the
        clips' ground (B, 2), `merge.depth_law`), also its map against the ground's depth law.
        Weighted like the full map's. A scalar."""
        level = torch.ones(votes.shape[0], device=votes.device)
        targets = inverse_targets(transforms, height, width)
        shift_x = targets[1].to(cue.device)
        error = (self.config.inverse_weight * (inverse_error(votes, transforms, height, width, targets)
                                               + (cue.float() - shift_x[:, None]).pow(2).mean())
                 + self.config.mirror_weight * mirror_error(votes, transforms, level))
        if self.config.reader_light_weight and light is not None:
            fitted = {name: value.to(votes.device) for name, value in light.items()}
            error = error + self.config.reader_light_weight * light_error(votes, fitted)
        if self.config.reader_depth_weight and depth is not None:
            error = error + self.config.reader_depth_weight * depth_law_error(votes[..., 0, 0], *depth)
        return error

    def depth_inputs(self, alpha: torch.Tensor, ground: torch.Tensor | None, frames: int
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`reader_error`'s `depth` for a batch: the input matte's (B, 1, T, H, W) extent at the `frames`
        latent frames' first pixel frames, and its `ground` (B, 2); None without `reader_depth_weight` or
        ground."""
        if not self.config.reader_depth_weight or ground is None:
            return None
        extent = matte_extent(alpha)
        return extent[:, ::extent.shape[1] // frames][:, :frames], ground

    def _background_of(self, conditions: torch.Tensor) -> torch.Tensor:
        channels = self.codec.channels
        return conditions[:, channels:2 * channels]

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """The training loss (`loss`): calling the module lets DDP/FSDP wrappers see the forward pass."""
        return self.loss(batch, generator)

    def _v_schedule(self) -> dict:
        """The ``v`` objective's noise schedule, one for training (`_ddpm`) and sampling (`_sampler`): CogVideoX's
        (scaled-linear betas rescaled to zero terminal SNR, v-prediction)."""
        return {"num_train_timesteps": self.config.train_timesteps, "beta_schedule": "scaled_linear",
                "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction",
                "rescale_betas_zero_snr": True}

    def _ddpm(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self._v_schedule())

    # ------------------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor, captions: list[str],
               steps: int = 20, guidance: float = 1.0, generator: torch.Generator | None = None,
               with_matte: bool = False):
        """Generate the composite: (B, 3, T, H, W) in [-1, 1]. `guidance` > 1 uses classifier-free guidance
        against the empty caption. With `with_matte` (layered outputs only) also return the subject's matte,
        (B, 1, T, H, W) in [0, 1]; the background is exact wherever it is 0 (``layer`` sets values below
        `MATTE_FLOOR` to 0; ``warp`` takes the likelier mirror side and composites the moved layer exactly)."""
        if with_matte and not self.layered:
            raise OptionError("with_matte needs a Composer with a layered output (layer or warp)")
        latent, matte, _, conditions = self._denoise(foreground, alpha, background, captions, steps, guidance,
                                                     generator)
        if self.config.output == "layer":  # where the matte is (near) empty the background is exact
            matte = torch.where(matte < MATTE_FLOOR, torch.zeros_like(matte), matte)
            latent = torch.where(self.codec.expand_matte(matte) > 0, latent, self._background_of(conditions))
        video = self.codec.decode(latent).clamp(-1, 1)
        if with_matte:
            return video, self.matte_pixels(matte).clamp(0, 1)
        return video

    @torch.no_grad()
    def warp_parameters(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                        captions: list[str], steps: int = 20, guidance: float = 1.0,
                        generator: torch.Generator | None = None, flip: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``warp``: sample as `sample` does and return the final map instead of pixels: per-frame
        parameters (B, out_channels, T: `WARP_CHANNELS`, or `DRAWN_CHANNELS` with the shadow and the light) and
        the clip's mirror logit (B,; chosen at the first step, from the inputs and caption alone, unless `flip`
        (B,) gives it: then the map is sampled for that choice), for `merge.warp.apply_warp` (and
        `light_values`) on the layer at any resolution (compose renders it at the background's size)."""
        if self.config.output != "warp":
            raise OptionError("warp_parameters needs a Composer with output warp")
        _, _, (raw, flip), _ = self._denoise(foreground, alpha, background, captions, steps, guidance, generator,
                                             flip)
        return pool_parameters(raw, foreground.shape[2])[0], flip

    @torch.no_grad()
    def mirror_logit(self, foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                     captions: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """Output ``warp``: the clip's mirror decision logit (B,) at pure noise, from the inputs and caption alone
        (what sampling decides at its first step; > 0 mirrors the layer; see `mirror_margin`)."""
        if self.config.output != "warp":
            raise OptionError("mirror_logit needs a Composer with output warp")
        device = next(self.parameters()).device
        foreground, alpha, background = foreground.to(device), alpha.to(device), background.to(device)
        shape = (foreground.shape[0], *self.codec.latent_shape(*foreground.shape[2:]))
        noise = torch.randn(shape, generator=generator).to(device)
        level = torch.full((shape[0],), float(self.config.train_timesteps), device=device)
        text = self.encode_text(captions)
        logit = self._mirror_vote(noise, foreground, alpha, background, level, text)
        return self._mirror_decision(logit, noise, foreground, alpha, background, level, text)

    def _mirror_vote(self, latent, foreground, alpha, background, timestep, text, empty=None, guidance=1.0
                     ) -> torch.Tensor:
        """The raw output's clip-wide mirror logit (B,) for these inputs at this step."""
        conditions = self.conditions(foreground, alpha, background)
        votes, _ = self.read_scene(foreground, alpha, background, conditions)
        raw = self._guided(latent, conditions, timestep, text, empty, guidance, votes)
        return pool_parameters(raw, foreground.shape[2])[1]

    def _mirror_decision(self, logit, latent, foreground, alpha, background, timestep, text, empty=None,
                         guidance=1.0) -> torch.Tensor:
        """The decision logit (B,) from the first step's mirror `logit` (B,): itself, or with `mirror_margin`
        its odd part under mirroring the subject layer, matte and noise (over the same background), less the
        margin: a prior learnt for every subject (training flips at p 0.7) cancels, and the layer is mirrored
        only when the network is that sure."""
        margin = self.config.mirror_margin
        if margin is None:
            return logit
        mirrored = self._mirror_vote(latent.flip(-1), foreground.flip(-1), alpha.flip(-1), background, timestep,
                                     text, empty, guidance)
        return (logit - mirrored) / 2 - margin

    def _denoise(self, foreground, alpha, background, captions, steps, guidance, generator, flip=None):
        """The sampling loop, in bf16 autocast on a GPU (`sampling_autocast`). Returns (final latent (B, C, t, h,
        w), matte (layered outputs; see `estimator`) or None, (the last (guided) raw output, the mirror logit chosen
        at the first step or given as `flip` (warp) or None), the conditions)."""
        with sampling_autocast(next(self.parameters()).device):
            return self._denoise_steps(foreground, alpha, background, captions, steps, guidance, generator, flip)

    def _denoise_steps(self, foreground, alpha, background, captions, steps, guidance, generator, flip=None):
        device = next(self.parameters()).device
        foreground, alpha, background = foreground.to(device), alpha.to(device), background.to(device)
        conditions = self.conditions(foreground, alpha, background)
        votes, _ = self.read_scene(foreground, alpha, background, conditions)  # the same at every step
        count = conditions.shape[0]
        text = self.encode_text(captions)
        empty = self.encode_text([""] * count) if guidance != 1.0 else None
        shape = (count, self.codec.channels, *conditions.shape[2:])
        latent = torch.randn(shape, generator=generator).to(device)
        scheduler = self._sampler()
        scheduler.set_timesteps(steps, device=device)
        # (warp: built at the first step, once the mirror is chosen)
        estimator = self.estimator(foreground, alpha, background) if self.config.output == "layer" else None
        estimate = matte = raw = first_flip = None
        for index, t in enumerate(scheduler.timesteps):
            timestep = t.expand(count).float().to(device)
            raw = self._guided(latent, conditions, timestep, text, empty, guidance, votes)
            if index == 0 and self.config.output == "warp":
                # The mirror is chosen once, at pure noise, from the inputs and the caption alone; later steps
                # would otherwise read it off their own noisy draft and flip at random where the inputs do not say.
                first_flip = flip.to(device) if flip is not None else self._mirror_decision(
                    pool_parameters(raw, foreground.shape[2])[1], latent, foreground, alpha, background, timestep,
                    text, empty, guidance)
                estimator = self.estimator(foreground, alpha, background, hard=True, flip=first_flip)
            if estimator is not None:
                estimate, matte = estimator(raw)
                prediction = (latent - estimate) / scheduler.sigmas[index]
            else:
                prediction = raw
            latent = scheduler.step(prediction, t, latent, return_dict=False)[0]
        if estimator is not None:  # the last step lands on the estimate: take it exactly
            latent = estimate
        return latent, matte, (raw, first_flip), conditions

    def _guided(self, latent, conditions, timestep, text, empty, guidance: float, votes=None):
        """The raw prediction, guided against the empty caption when `empty` is given (`votes`: the scene
        reader's, read once per sampling run)."""
        conditional = self.predict(latent, conditions, timestep, text, votes)
        if empty is None:
            return conditional
        unconditional = self.predict(latent, conditions, timestep, empty, votes)
        return unconditional + guidance * (conditional - unconditional)

    def _sampler(self):
        if self.config.objective == "flow":
            from diffusers import FlowMatchEulerDiscreteScheduler

            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.config.train_timesteps,
                                                   shift=self.config.flow_shift)
        from diffusers import DDIMScheduler

        return DDIMScheduler(**self._v_schedule(), timestep_spacing="trailing")

    # ------------------------------------------------------------------------------------------------ save/load

    def save_pretrained(self, folder: str | Path, weights: dict[str, torch.Tensor] | None = None) -> Path:
        """``composer.json`` (the config) and the weight files (`merge.composer_files`: ``transformer/`` as
        diffusers lays it out; a LoRA Composer only what it trained, ``adapter/`` (PEFT) and
        ``input_projection.safetensors``, loading rebuilds the rest from ``base``), atomically.

        `weights`: the Composer's weights by parameter name, whole (a sharded Composer holds slices: pass what
        `merge.checkpoint.gather_weights` gathered); by default its own."""
        from safetensors.torch import save_file

        from .composer_files import TRANSFORMER, split_into_files, write_transformer

        files = split_into_files(self, self.state_dict() if weights is None else weights)
        with atomic_dir(folder) as temporary:
            (temporary / "composer.json").write_text(json.dumps({"format": "splitmerge.composer", "version": 1,
                                                                 **asdict(self.config)}, indent=2) + "\n")
            if self.config.lora_rank:
                (temporary / "adapter").mkdir()
                self.transformer.peft_config["default"].save_pretrained(temporary / "adapter")
            else:
                write_transformer(self.transformer, files.pop(TRANSFORMER, {}), temporary / TRANSFORMER)
            for name, tensors in files.items():
                save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(temporary / name))
        return Path(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "Composer":
        folder = Path(folder)
        config = read_config(folder)
        if config.reader_width and not (folder / "reader.safetensors").is_file():
            raise MissingFileError(f"{folder}: no reader.safetensors (its config has a scene reader)")
        if config.light_reader_width and not (folder / "light_reader.safetensors").is_file():
            raise MissingFileError(f"{folder}: no light_reader.safetensors (its config has a light reader)")
        check_weights(config, config.base if config.lora_rank else None)   # before the transformer loads
        try:
            return cls._load(folder, config)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise OptionError(f"{folder}: cannot load the Composer's weights ({first[:200]})") from None

    @classmethod
    def _load(cls, folder: Path, config: ComposerConfig) -> "Composer":
        from safetensors.torch import load_file

        model = cls._load_backbone_part(folder, config)
        for name, reader in model.readers().items():
            reader.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
        return model

    @classmethod
    def _load_backbone_part(cls, folder: Path, config: ComposerConfig) -> "Composer":
        if not config.lora_rank:
            return cls(config, backbone=load_backbone(config.backbone, folder / "transformer"))
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from .backbones import input_projection

        if not config.base:   # (a base that is named but missing was refused by `check_weights`)
            raise MissingFileError(f"{folder}: a LoRA Composer needs its base transformer folder ({config.base})")
        model = cls.from_backbone(config, load_backbone(config.backbone, resolve(config.base),
                                                        config.backbone_config))
        input_projection(model.transformer, config.backbone).load_state_dict(
            load_file(str(folder / "input_projection.safetensors")))
        set_peft_model_state_dict(model.transformer, load_file(str(folder / "adapter" / "adapter_model.safetensors")))
        return model
