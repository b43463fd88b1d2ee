"""Data: building layered datasets from many videos (locally or on Ray), synthetic scenes, real cut-outs, and
the PyTorch datasets that feed training."""

from .build import BuildConfig, build
from .manifest import read_manifest

__all__ = ["BuildConfig", "build", "read_manifest"]
