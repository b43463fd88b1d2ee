"""Evaluation: metrics and ground-truth material (more lands with the Evaluate stage)."""

from .metrics import boundary_f, mask_iou, masked_psnr, psnr

__all__ = ["boundary_f", "mask_iou", "masked_psnr", "psnr"]
