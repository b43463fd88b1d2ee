"""Evaluation: metrics (more land with the Evaluate stage)."""

from .metrics import psnr

__all__ = ["psnr"]
