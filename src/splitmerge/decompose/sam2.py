"""The ``sam2`` refiner: SAM2 video masks prompted by the segmenter's boxes and points (local weights).

The segmenter already knows *where* the subject is on each frame; SAM2 knows object *boundaries*. On a few key
frames (the one where the subject is largest, plus every `key_every`-th frame the segmenter found it on) SAM2 is
prompted with the segmenter's box and positive points, and its video memory carries the object forwards and
backwards through the whole clip. The result is a soft matte (the mask logits through a sigmoid) at the clip's
size.

Weights: a local folder holding a transformers ``Sam2VideoModel`` (``config.json`` + ``model.safetensors``, e.g.
a download of ``facebook/sam2.1-hiera-tiny``), given as ``model_path`` (CLI ``--refiner-model``) or by the
``SPLITMERGE_SAM2_MODEL`` environment variable. Frames are normalised and prompts scaled here exactly as
``Sam2VideoProcessor`` does, so the processor's torchvision dependency is not needed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import OptionError
from .backends import Backend, Segmentation, SplitClip, register
from .filters import present_frames
from .motion import boxes_and_points
from .weights import LocalWeights

ENV_VAR = "SPLITMERGE_SAM2_MODEL"
KEY_EVERY = 16              # present frames between two prompted key frames (besides the largest one)
CONFIDENT_LOGIT = 2.0       # SAM2 object score above which a frame the segmenter missed is kept (p > 0.88)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OBJECT_ID = 1
BOX_LABELS = (2, 3)         # SAM2's point labels for a box's top-left and bottom-right corners
POSITIVE = 1


WEIGHTS = LocalWeights(
    label="refiner 'sam2'", env_var=ENV_VAR, flag="--refiner-model", manifest="config.json", key="model_type",
    accepted=("sam2_video", "sam2"), kind="a transformers Sam2VideoModel folder (SAM2 video)",
    modules=("transformers.models.sam2_video",), install="pip install 'splitmerge[models]' (transformers>=4.56)")


@register("refiner")
class Sam2Refiner(Backend):
    """SAM2 (transformers ``Sam2VideoModel``) prompted on key frames and propagated through the clip."""

    name = "sam2"
    description = "SAM2 video masks prompted by the segmenter's boxes and points (transformers, local weights)"

    @classmethod
    def availability(cls, model_path: str | os.PathLike | None = None) -> tuple[bool, str]:
        """(True, "") when the extra is installed and the SAM2 folder (`model_path`, else the environment
        variable) looks usable; else (False, the reason with the fix)."""
        return WEIGHTS.availability(model_path)

    def __init__(self, model_path: str | os.PathLike | None = None, key_every: int = KEY_EVERY,
                 device: str | None = None):
        self.path = WEIGHTS.resolve(model_path)
        if not isinstance(key_every, int) or key_every < 1:
            raise OptionError(f"refiner 'sam2': key_every {key_every!r} must be a positive integer")
        self.key_every = key_every

        import torch
        from transformers import Sam2VideoModel

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        try:
            self.model = Sam2VideoModel.from_pretrained(self.path, dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            raise WEIGHTS.load_error(self.path, error) from None
        self.input_size = int(np.max(self.model.config.image_size))
        self.mean, self.std = _normalisation(self.path)
        self.info: dict = {}

    def describe_config(self) -> dict:
        # The folder's name only: the full path may be private (layers.json travels with the data).
        return {"name": self.name, "model": self.path.name, "key_every": self.key_every,
                "input_size": self.input_size, "device": self.device.type}

    # ------------------------------------------------------------------------------------------------ refine

    def refine(self, clip: SplitClip, segmentation: Segmentation) -> Segmentation:
        """A new `Segmentation` whose alpha (T, H, W) float32 in [0, 1] is SAM2's, at the clip's size.

        Frames the segmenter found nothing on stay empty unless SAM2's object score is confident; frames the
        segmenter found the subject on but SAM2 lost keep the segmenter's matte. Boxes and points are recomputed
        from the new alpha; ``info["refiner"]`` records what was done.
        """
        started = time.perf_counter()
        found = ~np.isnan(segmentation.boxes[:, 0])
        if not found.any():
            return segmentation
        keys = self.key_frames(segmentation.alpha, found)
        logits, scores = self._track(clip.frames, segmentation, keys)

        alpha = _sigmoid(logits)
        # Clean tails: the sigmoid never reaches 0 or 1, and an 8-bit matte should not carry a faint veil.
        alpha[alpha < 1 / 255] = 0.0
        alpha[alpha > 1 - 1 / 255] = 1.0
        sam_present = present_frames(alpha)
        recovered = ~found & sam_present & (scores > CONFIDENT_LOGIT)
        alpha[~found & ~recovered] = 0.0
        fallback = found & ~sam_present
        alpha[fallback] = segmentation.alpha[fallback]

        boxes, points = boxes_and_points(alpha)
        present = present_frames(alpha)
        self.info = {"name": self.name, "key_frames": [int(k) for k in keys],
                     "recovered_frames": int(recovered.sum()), "fallback_frames": int(fallback.sum()),
                     "seconds": round(time.perf_counter() - started, 3)}
        return Segmentation(alpha.astype(np.float32), boxes, points, found=bool(present.any()),
                            reason="" if present.any() else "refiner lost the subject",
                            info={**segmentation.info, "refiner": self.info})

    def key_frames(self, alpha: np.ndarray, found: np.ndarray) -> list[int]:
        """Frames to prompt: where the found subject is largest, plus every `key_every`-th found frame."""
        indices = np.flatnonzero(found)
        areas = (alpha[indices] > 0.5).sum(axis=(1, 2))
        largest = int(indices[int(np.argmax(areas))])
        return sorted({largest, *(int(i) for i in indices[::self.key_every])})

    def _track(self, frames: np.ndarray, segmentation: Segmentation, keys: list[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        """SAM2 mask logits (T, H, W) float32 at the clip's size and object score logits (T,) per frame."""
        import torch
        import torch.nn.functional as functional
        from transformers import Sam2VideoInferenceSession

        count, height, width = frames.shape[:3]
        session = Sam2VideoInferenceSession(
            video=self._pixels(frames), video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.device, video_storage_device="cpu", dtype=self.dtype)
        obj_idx = session.obj_id_to_idx(OBJECT_ID)
        outputs = {}
        with torch.inference_mode():
            for key in keys:
                coords, labels = self._prompt(segmentation.boxes[key], segmentation.points[key], height, width)
                session.add_point_inputs(obj_idx, key, {"point_coords": coords, "point_labels": labels})
                session.remove_mask_inputs(obj_idx, key)
                session.obj_with_new_inputs = [OBJECT_ID]
                outputs[key] = self.model(inference_session=session, frame_idx=key)
            # Forwards from the first key frame to the end, then backwards from it to frame 0; later key frames
            # are conditioning frames, their prompted output is reused, not recomputed.
            for output in self.model.propagate_in_video_iterator(session, start_frame_idx=keys[0]):
                outputs[output.frame_idx] = output
            if keys[0] > 0:
                for output in self.model.propagate_in_video_iterator(session, start_frame_idx=keys[0], reverse=True):
                    outputs[output.frame_idx] = output
            logits = np.empty((count, height, width), np.float32)
            scores = np.empty(count, np.float32)
            for t in range(count):
                low = outputs[t].pred_masks[:1, :1].float()  # (1, 1, h, w) at a quarter of the input size
                logits[t] = functional.interpolate(low, (height, width), mode="bilinear",
                                                   align_corners=False)[0, 0].cpu().numpy()
                scores[t] = float(outputs[t].object_score_logits.reshape(-1)[0])
        return logits, scores

    def _pixels(self, frames: np.ndarray):
        """(T, 3, S, S) tensor: frames resized to the model's square input and normalised (as the processor)."""
        import torch

        size = self.input_size
        # Area averaging when shrinking stands in for the processor's antialiased resize.
        interpolation = cv2.INTER_AREA if size < min(frames.shape[1:3]) else cv2.INTER_LINEAR
        resized = np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])
        normalised = (resized.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))

    def _prompt(self, box: np.ndarray, points: np.ndarray, height: int, width: int):
        """Box corners (labels 2, 3) then positive points (label 1), in input-size pixels: (1, 1, N, 2), (1, 1, N)."""
        import torch

        corners = np.asarray(box, np.float32).reshape(2, 2)
        coords = np.concatenate([corners, np.asarray(points, np.float32).reshape(-1, 2)])
        coords = coords * np.float32([self.input_size / width, self.input_size / height])
        labels = np.array([*BOX_LABELS] + [POSITIVE] * (len(coords) - 2), np.int32)
        return torch.from_numpy(coords[None, None]), torch.from_numpy(labels[None, None])


def _normalisation(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std, each (3,) float32: the folder's preprocessor config when it has one."""
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        config = path / name
        if config.is_file():
            try:
                settings = json.loads(config.read_text())
                return (np.float32(settings.get("image_mean", IMAGENET_MEAN)),
                        np.float32(settings.get("image_std", IMAGENET_STD)))
            except (OSError, ValueError, AttributeError):
                break
    return np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)  # tanh form: no overflow at -1024
