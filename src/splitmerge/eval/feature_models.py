"""Model-backed feature backends for the paper's metrics, loaded from local transformers folders (no downloads).

- Identity backends (``fg_identity@NAME``, ``bg_identity@NAME``): frame features averaged over the clip, cosine x
  100. `ImageFeatures` works with any transformers vision model: CLIP / SigLIP (``get_image_features``, the
  paper's ViCLIP kind), DINOv2 and other encoders (pooled or CLS output). Frames are resized to the model's
  input size and normalised with the folder's preprocessor settings (CLIP's when the folder has none and the
  model is CLIP-like, ImageNet's otherwise). A CLIP-like folder with its tokenizer also gives
  ``text_alignment@NAME``: cosine x 100 of the result's mean frame feature and the prompt's text feature.
- Flow backends (``bg_motion@NAME``): ``PerceiverForOpticalFlow`` (the paper's own flow model), `LearnedFlow`.
- Action backends (``fg_motion@NAME``): a video classifier (VideoMAE, TimeSformer: ``AutoModelForVideoClassification``,
  Kinetics-400 checkpoints being the paper's kind) gives a distribution over actions for the input subject and
  for the result's subject; the score is the KL divergence between them (lower is better), as in the paper.

Weights come from the folders given (``--identity-model``, ``--action-model``); every backend is tested with a
tiny randomly initialised model.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..errors import MissingFileError, OptionError
from .features import kl_divergence

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IDENTITY_FRAMES = 8


def _folder(path: str | Path, what: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise MissingFileError(f"{folder}: no config.json (expected a transformers {what} folder)")
    return folder


def _normalisation(folder: Path, clip_like: bool) -> tuple[tuple, tuple]:
    settings = folder / "preprocessor_config.json"
    if settings.is_file():
        record = json.loads(settings.read_text())
        if "image_mean" in record and "image_std" in record:
            return tuple(record["image_mean"]), tuple(record["image_std"])
    return CLIP if clip_like else IMAGENET


def _pixels(frames: np.ndarray, size: int, mean, std) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float32, resized (area) and normalised."""
    resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    values = (resized.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
    return values.transpose(0, 3, 1, 2)


def _size(config) -> int:
    size = getattr(config, "image_size", None) or getattr(getattr(config, "vision_config", None), "image_size", 224)
    return int(size if np.isscalar(size) else max(size))


class ImageFeatures:
    """Clip features = the mean of per-frame features of a transformers vision model (unit vector)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from transformers import AutoConfig, AutoModel

        folder = _folder(path, "vision model")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.clip_like = hasattr(self.model, "get_image_features")
        self.size = _size(config)
        self.mean, self.std = _normalisation(folder, self.clip_like)
        self.name = Path(folder).name
        self.device, self._torch = device, torch
        self.tokenizer = None
        if self.clip_like and hasattr(self.model, "get_text_features"):
            from transformers import AutoTokenizer

            try:  # a CLIP-like folder with its tokenizer also scores text alignment
                self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError, TypeError):
                self.tokenizer = None

    def text(self, prompt: str) -> np.ndarray | None:
        """The prompt's unit text feature in the same space as the frames (CLIP-like folders with a tokenizer)."""
        if self.tokenizer is None:
            return None
        torch = self._torch
        limit = int(getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", 77))
        tokens = self.tokenizer([prompt], padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.no_grad():
            features = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
            features = getattr(features, "pooler_output", features)
        vector = features[0].float().cpu().numpy()
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (D,) unit vector, from `IDENTITY_FRAMES` evenly spaced frames."""
        torch = self._torch
        picks = np.unique(np.linspace(0, len(frames) - 1, min(IDENTITY_FRAMES, len(frames))).round().astype(int))
        pixels = torch.from_numpy(_pixels(frames[picks], self.size, self.mean, self.std)).to(self.device)
        with torch.no_grad():
            if self.clip_like:
                features = self.model.get_image_features(pixel_values=pixels)
                features = getattr(features, "pooler_output", features)
            else:
                output = self.model(pixel_values=pixels)
                pooled = getattr(output, "pooler_output", None)
                features = pooled if pooled is not None else output.last_hidden_state[:, 0]
        mean = features.float().mean(dim=0).cpu().numpy()
        return mean / max(float(np.linalg.norm(mean)), 1e-12)


class ActionDistribution:
    """A video classifier's class distribution for a clip (softmax of its logits)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from transformers import AutoConfig, AutoModelForVideoClassification

        folder = _folder(path, "video classification model")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForVideoClassification.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.frames = int(getattr(config, "num_frames", 16))
        self.size = _size(config)
        self.mean, self.std = _normalisation(folder, clip_like=False)
        self.name = Path(folder).name
        self.device, self._torch = device, torch

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (classes,) probabilities, from the model's number of evenly spaced frames."""
        torch = self._torch
        picks = np.linspace(0, len(frames) - 1, self.frames).round().astype(int)
        pixels = torch.from_numpy(_pixels(frames[picks], self.size, self.mean, self.std))[None].to(self.device)
        with torch.no_grad():
            logits = self.model(pixel_values=pixels).logits[0].float()
        return torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float64)


class LearnedFlow:
    """Optical flow from a transformers ``PerceiverForOpticalFlow`` folder (the paper's own flow model).

    Each frame pair is resized to the model's ``train_size``, scaled to [-1, 1], turned into 3x3 patches around
    every pixel (27 values, as Perceiver IO does), and the predicted flow is resized back and rescaled to the
    clip's pixels."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from transformers import PerceiverForOpticalFlow

        folder = _folder(path, "PerceiverForOpticalFlow")
        self.model = PerceiverForOpticalFlow.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.size = tuple(int(v) for v in self.model.config.train_size)  # (H, W)
        self.name = Path(folder).name
        self.device, self._torch = device, torch

    def _patches(self, frame: np.ndarray):
        torch = self._torch
        height, width = self.size
        image = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
        tensor = torch.from_numpy(image.transpose(2, 0, 1))[None]          # (1, 3, H, W)
        patches = torch.nn.functional.unfold(tensor, kernel_size=3, padding=1)  # (1, 27, H * W)
        return patches.view(27, height, width)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T-1, H, W, 2) flow in pixels of the clip."""
        torch = self._torch
        height, width = frames.shape[1:3]
        model_h, model_w = self.size
        flows = []
        for t in range(len(frames) - 1):
            inputs = torch.stack([self._patches(frames[t]), self._patches(frames[t + 1])])[None].to(self.device)
            with torch.no_grad():
                flow = self.model(inputs=inputs).logits[0].float().cpu().numpy()  # (h, w, 2)
            flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
            flows.append(flow * np.float32([width / model_w, height / model_h]))
        return np.stack(flows)


def model_metrics(identity: ImageFeatures | None, action: ActionDistribution | None, input_fg: np.ndarray,
                  background: np.ndarray, result_fg: np.ndarray, keep: np.ndarray, result: np.ndarray,
                  flow: LearnedFlow | None = None, prompt: str = "") -> dict:
    """The paper's identity and motion metrics with model features.

    Args:
        input_fg, result_fg: (T, H, W, 3) uint8 subject layers (premultiplied: black around the subject).
        background, result: the input background and the result; `keep` (T, H, W) is 1 outside both subjects
            (the subjects are blacked out in both before the background features, as the paper does).
    """
    scores = {}
    if identity is not None:
        tag = f"@{identity.name}"
        scores["fg_identity" + tag] = float(100 * identity(input_fg) @ identity(result_fg))
        masked_bg = (background * keep[..., None]).astype(np.uint8)
        masked_result = (result * keep[..., None]).astype(np.uint8)
        scores["bg_identity" + tag] = float(100 * identity(masked_bg) @ identity(masked_result))
        text = identity.text(prompt) if prompt else None
        if text is not None:  # the paper's video-text cosine, with frame features averaged
            scores["text_alignment" + tag] = float(100 * identity(result) @ text)
    if action is not None:
        p, q = action(input_fg), action(result_fg)
        p, q = np.maximum(p, 1e-8), np.maximum(q, 1e-8)
        scores[f"fg_motion@{action.name}"] = kl_divergence(p, q)
    if flow is not None:
        outside = keep[:-1] > 0
        difference = np.square(flow(background) - flow(result)).sum(axis=-1)
        scores[f"bg_motion@{flow.name}"] = float(difference[outside].mean()) if outside.any() else float("nan")
    return scores


def load_feature_models(identity_model: str | None = None, action_model: str | None = None,
                        flow_model: str | None = None
                        ) -> tuple[ImageFeatures | None, ActionDistribution | None, LearnedFlow | None]:
    """The model backends asked for (None where no folder is given)."""
    try:
        return (ImageFeatures(identity_model) if identity_model else None,
                ActionDistribution(action_model) if action_model else None,
                LearnedFlow(flow_model) if flow_model else None)
    except (OSError, ValueError, KeyError) as error:
        raise OptionError(f"feature model cannot be loaded: {' '.join(str(error).split())[:200]}") from None
