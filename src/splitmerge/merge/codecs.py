"""Codecs between pixels and the Composer's latent space. Each declares its temporal and spatial factors; the
matte reaches latent resolution by max-pooling by those factors (the paper's way: a subject pixel anywhere in a
latent cell marks the cell).

A Composer with ``output="layer"`` also predicts a matte in latent space: ``matte_channels`` values per latent
cell (one per pixel for the pixel codec, one per cell for a VAE), `expand_matte` spreads them over the latent
channels for compositing (``a * layer + (1 - a) * background`` in latent space, exact for the pixel codec) and
`decode_matte` brings them to pixels.

- `PixelCodec` (no weights; CPU presets): space-to-depth. (B, 3, T, H, W) in [-1, 1] -> (B, 3 * t * s * s,
  T / t, H / s, W / s); exact and invertible. ``spatial=1, temporal=1`` is plain pixels.
- `VaeCodec` (GPU presets): a diffusers video VAE from a local folder (``AutoencoderKLWan``,
  ``AutoencoderKLCogVideoX``), latents normalised the way the backbone was trained (mean/std or scaling factor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import MissingFileError, OptionError, ShapeError


@dataclass(frozen=True)
class CodecSpec:
    """What a codec is, for configs: ``kind`` "pixel" (with factors) or "vae" (with a local folder)."""

    kind: str = "pixel"
    spatial: int = 4
    temporal: int = 1
    path: str | None = None


class PixelCodec:
    """Space-to-depth (and time-to-depth) of pixels: no weights, no loss."""

    def __init__(self, spatial: int = 4, temporal: int = 1):
        if spatial < 1 or temporal < 1:
            raise OptionError(f"pixel codec factors must be >= 1 (got spatial {spatial}, temporal {temporal})")
        self.spatial, self.temporal = int(spatial), int(temporal)
        self.matte_channels = self.spatial * self.spatial * self.temporal
        self.channels = 3 * self.matte_channels

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return self.channels, frames // self.temporal, height // self.spatial, width // self.spatial

    def _check(self, video: torch.Tensor) -> None:
        _, _, t, h, w = video.shape
        if t % self.temporal or h % self.spatial or w % self.spatial:
            raise ShapeError(f"pixel codec: {t} frames at {h}x{w} must be multiples of {self.temporal} and "
                             f"{self.spatial}")

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C * t * s * s, T / t, H / s, W / s)."""
        self._check(video)
        b, c, t, h, w = video.shape
        s, k = self.spatial, self.temporal
        x = video.reshape(b, c, t // k, k, h // s, s, w // s, s)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # b, c, k, s, s, t', h', w'
        return x.reshape(b, c * k * s * s, t // k, h // s, w // s)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode`."""
        b, channels, t, h, w = latent.shape
        s, k = self.spatial, self.temporal
        c = channels // (k * s * s)
        x = latent.reshape(b, c, k, s, s, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return x.reshape(b, c, t * k, h * s, w * s)

    def matte(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) in [0, 1] -> (B, 1, T / t, H / s, W / s), max-pooled."""
        return F.max_pool3d(alpha, kernel_size=(self.temporal, self.spatial, self.spatial))

    def expand_matte(self, matte: torch.Tensor) -> torch.Tensor:
        """(B, t*s*s, ...) per-pixel matte values in latent layout -> (B, C, ...): the same value on each colour
        channel of its pixel (the colour is the outermost factor of `encode`'s channel order)."""
        return matte.repeat(1, 3, 1, 1, 1)

    def decode_matte(self, matte: torch.Tensor) -> torch.Tensor:
        """(B, t*s*s, t', h', w') -> (B, 1, T, H, W)."""
        return self.decode(matte)

    def describe(self) -> dict:
        return {"kind": "pixel", "spatial": self.spatial, "temporal": self.temporal}


class VaeCodec:
    """A diffusers video VAE from a local folder, frozen. Latents are normalised per channel when the VAE config
    gives ``latents_mean``/``latents_std`` (Wan), else scaled by ``scaling_factor`` (CogVideoX).

    The VAE is not one of the Composer's modules (it is frozen, never saved with it, never wrapped by DDP/FSDP), so
    `Composer.to` and ``accelerator.prepare`` do not move it: it follows its inputs instead, moving to the device
    of the first video or latent it is given there (`_on`), and returns latents on that device."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype=torch.float32):
        from .random_weights import is_random, random_vae

        folder = Path(path).expanduser()
        vae = random_vae(str(path), dtype) if is_random(path) else self._load(folder, dtype)
        self.vae = vae.to(device).eval().requires_grad_(False)
        for memory_saver in ("enable_tiling", "enable_slicing"):   # 49 frames of 480x720 in tiles, one clip at a time
            if hasattr(self.vae, memory_saver):
                getattr(self.vae, memory_saver)()
        config = self.vae.config
        self.temporal = int(getattr(config, "temporal_compression_ratio", None) or
                            getattr(self.vae, "temporal_compression_ratio", None) or 4)
        self.spatial = int(getattr(config, "spatial_compression_ratio", None) or
                           2 ** (len(getattr(config, "block_out_channels", [0, 0, 0, 0])) - 1))
        self.channels = int(getattr(config, "latent_channels", None) or config.z_dim)
        self.matte_channels = 1
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean and (len(mean) != self.channels or len(std or []) != self.channels):
            raise OptionError(f"{folder}: latents_mean/std have {len(mean)} entries for {self.channels} channels")
        self.mean = torch.tensor(mean).view(1, -1, 1, 1, 1) if mean else None
        self.std = torch.tensor(std).view(1, -1, 1, 1, 1) if std else None
        self.scaling = float(getattr(config, "scaling_factor", 1.0) or 1.0)
        self.path, self.device, self.dtype = str(folder), device, dtype

    @staticmethod
    def _load(folder: Path, dtype: torch.dtype):
        if not (folder / "config.json").is_file():
            raise MissingFileError(f"{folder}: no config.json (expected a diffusers video VAE folder)")
        import json

        import diffusers

        kind = json.loads((folder / "config.json").read_text()).get("_class_name", "")
        cls = getattr(diffusers, kind, None)
        if cls is None or "Autoencoder" not in kind:
            raise OptionError(f"{folder}: {kind!r} is not a diffusers video VAE")
        return cls.from_pretrained(folder, torch_dtype=dtype)

    def _on(self, device: torch.device) -> None:
        """Move the VAE to `device` when it is elsewhere (once per device change, not per call)."""
        if torch.device(device) != torch.device(self.device):
            self.vae.to(device)
            self.device = torch.device(device)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, C, T', H', W') normalised latents, on the video's device."""
        self._on(video.device)
        with torch.no_grad():
            latent = self.vae.encode(video.to(self.device, self.dtype)).latent_dist.mode()
        if self.mean is not None:
            return (latent - self.mean.to(latent)) / self.std.to(latent)
        return latent * self.scaling

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode`: (B, 3, T, H, W) float32 on the latent's device."""
        self._on(latent.device)
        latent = latent * self.std.to(latent) + self.mean.to(latent) if self.mean is not None \
            else latent / self.scaling
        with torch.no_grad():
            return self.vae.decode(latent.to(self.dtype)).sample.float()

    def matte(self, alpha: torch.Tensor) -> torch.Tensor:
        """Max-pool to latent resolution; the first frame stands alone, as causal video VAEs encode it."""
        first = F.max_pool3d(alpha[:, :, :1], kernel_size=(1, self.spatial, self.spatial))
        rest = alpha[:, :, 1:]
        if rest.shape[2] == 0:
            return first
        return torch.cat([first, F.max_pool3d(rest, kernel_size=(self.temporal, self.spatial, self.spatial))], 2)

    def expand_matte(self, matte: torch.Tensor) -> torch.Tensor:
        """(B, 1, ...) -> (B, C, ...): one matte value per latent cell, on every latent channel."""
        return matte.expand(-1, self.channels, -1, -1, -1)

    def decode_matte(self, matte: torch.Tensor) -> torch.Tensor:
        """(B, 1, t', h', w') -> (B, 1, T, H, W), nearest; the first latent frame is one pixel frame (causal VAE)."""
        first = matte[:, :, :1]
        rest = matte[:, :, 1:].repeat_interleave(self.temporal, dim=2)
        frames = torch.cat([first, rest], dim=2)
        return frames.repeat_interleave(self.spatial, dim=3).repeat_interleave(self.spatial, dim=4)

    def describe(self) -> dict:
        return {"kind": "vae", "path": self.path, "spatial": self.spatial, "temporal": self.temporal}


def build_codec(spec: CodecSpec | dict, device: str = "cpu"):
    spec = CodecSpec(**spec) if isinstance(spec, dict) else spec
    if spec.kind == "pixel":
        return PixelCodec(spec.spatial, spec.temporal)
    if spec.kind == "vae":
        if not spec.path:
            raise OptionError("a vae codec needs the local VAE folder (codec.path)")
        from .weight_files import resolve

        return VaeCodec(resolve(spec.path), device)
    raise OptionError(f"codec kind {spec.kind!r}: expected pixel or vae")
