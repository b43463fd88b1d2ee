"""Data: building layered datasets from many videos (locally or on Ray), synthetic scenes, real cut-outs, and
the PyTorch datasets that feed training (imported on first use: they need torch)."""

from .build import BuildConfig, build
from .manifest import read_manifest

_TORCH_NAMES = ("StmDataset", "StmIterableDataset", "SceneDataset", "collate_samples", "add_input_noise",
                "NoiseConfig")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from . import torch_dataset

        return getattr(torch_dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BuildConfig", "build", "read_manifest", *_TORCH_NAMES]
