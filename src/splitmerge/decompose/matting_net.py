"""The learned matting network: frame, scene plate and coarse matte in; the subject's matte and its shadow out.

A small U-Net (`MattingConfig`: four levels at 1/2 to 1/16 of the resolution, 0.12 M parameters at the
default widths) with a light full-resolution head (the U-Net's features upsampled beside the full-resolution
inputs, two convolutions), so the edge is decided at full resolution at a small cost. Per frame, at the split's
working resolution:

    inputs  (N, 3, H, W) frame, (N, 3, H, W) plate, each in [0, 1]; (N, 1, H, W) coarse matte in [0, 1]
    features computed inside: |frame - plate| (mean over channels) and the log luminance ratio frame / plate
            (a shadow is the plate darkened: a negative ratio with no colour change)
    outputs (N, 1, H, W) alpha in [0, 1]; (N, 1, H, W) gain in [GAIN_MIN, 1] (the shadow the subject casts on
            the background, 1 = untouched), as in Layers version 2

It refines what the motion segmenter finds (`decompose.matting`) rather than finding the subject: it sees the
segmenter's matte, and the plate the restorer built without it. Weights are safetensors with a ``config.json``
beside them (`save_matting`, `load_matting`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from ..atomic import atomic_file
from ..config_types import check_field_types
from ..errors import LayersFormatError, MissingFileError, OptionError, ShapeError

GAIN_MIN = 0.2          # the darkest shadow gain the network can say (Layers' effects stay above 0)
GAIN_BIAS = 4.0         # the gain output starts near 1 (no shadow): sigmoid(4) = 0.98
MULTIPLE = 16           # input sides must be multiples of this (four halvings)
WEIGHTS = "matting.safetensors"
CONFIG = "config.json"


@dataclass
class MattingConfig:
    """Widths of the four U-Net levels (1/2, 1/4, 1/8, 1/16 of the resolution); the head has the first one."""

    widths: tuple[int, int, int, int] = (8, 16, 32, 64)

    def __post_init__(self):
        check_field_types(self, "matting config")
        self.widths = tuple(self.widths)
        if len(self.widths) != 4 or not all(isinstance(w, int) and 4 <= w <= 512 for w in self.widths):
            raise OptionError(f"matting widths {self.widths!r}: expected four whole numbers in [4, 512]")


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(outputs, outputs, 3, padding=1), nn.ReLU(inplace=True))


class MattingNet(nn.Module):
    """See the module docstring. `forward(frame, plate, coarse) -> (alpha, gain)`."""

    INPUTS = 9  # frame 3, plate 3, coarse 1, difference 1, log luminance ratio 1

    def __init__(self, config: MattingConfig | None = None):
        super().__init__()
        self.config = config or MattingConfig()
        w0, w1, w2, w3 = self.config.widths
        self.enc0 = _block(self.INPUTS, w0)
        self.enc1 = _block(w0, w1)
        self.enc2 = _block(w1, w2)
        self.enc3 = _block(w2, w3)
        self.dec2 = _block(w3 + w2, w2)
        self.dec1 = _block(w2 + w1, w1)
        self.dec0 = _block(w1 + w0, w0)
        self.head = nn.Sequential(nn.Conv2d(w0 + self.INPUTS, w0, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(w0, 2, 3, padding=1))

    @staticmethod
    def features(frame: torch.Tensor, plate: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(N, 9, H, W): the inputs and the two comparisons of frame and plate."""
        difference = (frame - plate).abs().mean(dim=1, keepdim=True)
        weights = frame.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        ratio = torch.log((frame * weights).sum(1, keepdim=True) + 0.02) - torch.log(
            (plate * weights).sum(1, keepdim=True) + 0.02)
        return torch.cat([frame, plate, coarse, difference, ratio], dim=1)

    def forward(self, frame: torch.Tensor, plate: torch.Tensor, coarse: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.logits(frame, plate, coarse)
        alpha = torch.sigmoid(out[:, :1])
        gain = GAIN_MIN + (1 - GAIN_MIN) * torch.sigmoid(out[:, 1:] + GAIN_BIAS)
        return alpha, gain

    def logits(self, frame: torch.Tensor, plate: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W) raw outputs: the alpha logit, and the gain's before `GAIN_BIAS` and the sigmoid."""
        height, width = frame.shape[-2:]
        if height % MULTIPLE or width % MULTIPLE:
            raise ShapeError(f"matting input {height}x{width}: sides must be multiples of {MULTIPLE} (pad first)")
        full = self.features(frame, plate, coarse)
        x0 = self.enc0(functional.avg_pool2d(full, 2))
        x1 = self.enc1(functional.max_pool2d(x0, 2))
        x2 = self.enc2(functional.max_pool2d(x1, 2))
        x3 = self.enc3(functional.max_pool2d(x2, 2))
        y2 = self.dec2(torch.cat([_up(x3), x2], dim=1))
        y1 = self.dec1(torch.cat([_up(y2), x1], dim=1))
        y0 = self.dec0(torch.cat([_up(y1), x0], dim=1))
        return self.head(torch.cat([_up(y0), full], dim=1))


def pad_to_multiple(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """Pad (N, C, H, W) tensors at the bottom and right (replicate) so both sides are multiples of `MULTIPLE`;
    returns them and the (H, W) to crop the network's outputs back to."""
    height, width = tensors[0].shape[-2:]
    pad_h, pad_w = (-height) % MULTIPLE, (-width) % MULTIPLE
    if not (pad_h or pad_w):
        return list(tensors), (height, width)
    return [functional.pad(t, (0, pad_w, 0, pad_h), mode="replicate") for t in tensors], (height, width)


def _up(x: torch.Tensor) -> torch.Tensor:
    return functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def save_matting(model: MattingNet, folder: str | Path, extra: dict | None = None) -> Path:
    """Write ``matting.safetensors`` and ``config.json`` (the config and `extra`, e.g. how it was trained)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    with atomic_file(folder / WEIGHTS) as temporary:  # a crash leaves the old files or none, never half of one
        save_file(state, str(temporary))
    with atomic_file(folder / CONFIG) as temporary:
        temporary.write_text(json.dumps({**asdict(model.config), **(extra or {})}, indent=2) + "\n")
    return folder


def load_matting(folder: str | Path) -> MattingNet:
    """The network saved in `folder` (`save_matting`), in eval mode on the CPU."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise MissingFileError(f"matting model {folder}: {name} is missing")
    try:
        record = json.loads((folder / CONFIG).read_text())
        config = MattingConfig(widths=tuple(record["widths"]))
    except (ValueError, KeyError, TypeError) as error:
        raise LayersFormatError(f"matting model {folder / CONFIG}: unreadable ({error})") from None
    model = MattingNet(config)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except (RuntimeError, OSError) as error:
        raise LayersFormatError(f"matting model {folder / WEIGHTS}: does not fit its config ({error})") from None
    return model.eval()
