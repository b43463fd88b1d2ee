"""The matting stage: after the restorer, the segmenter's matte becomes the final matte and the effects layer.

Backends (kind ``matting``, `SplitConfig.matting`, ``split --matting NAME``), each with
``separate(clip, alpha, background, scene) -> (alpha, effects)`` on a window: `clip` the frames, `alpha`
(T, H, W) float32 the segmenter's matte, `background` (T, H, W, 3) uint8 the restorer's clean background,
`scene` (T, H, W, 3) uint8 the restored scene in every frame's view everywhere (None unless the backend's
``needs_scene``); returns the matte (T, H, W) float32 and the effects gain (T, H, W) float32 (1 = untouched).

- ``rule`` (default): the matte as segmented; the cast shadow moved out of it into the effects by
  `effects.separate_effects` (plate-like darkened pixels in the matte, and beside it against the scene); then
  the matte's faint glow beyond its outline, where the frame shows the scene, dropped (`edges.clear_glow`).
- ``net``: the learned network (`matting_net`, bundled in ``splitmerge/models/matting``, its card beside it):
  each frame, its scene plate and the coarse matte in, the matte and the shadow gain out, inside the coarse
  matte's box grown by `MARGIN` px (nothing outside it changes: alpha 0, gain 1).

With ``effects=False`` (Layers version 1) the pipeline keeps the matte each backend gives and drops the effects.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..video.geometry import mask_window
from .backends import Backend, SplitClip, register
from .edges import clear_glow
from .effects import separate_effects
from .matting_net import MULTIPLE, pad_to_multiple

BUNDLED = Path(__file__).resolve().parent.parent / "models" / "matting"
MARGIN = 24        # px around the coarse matte's box that the network may still call subject or shadow
COARSE_MIN = 0.01  # coarse matte values below this do not count for the box
CORE_DEPTH = 6     # px: deeper inside the segmenter's matte than this, the network can only add (`keep_core`)
NO_SHADOW = 0.9    # a network gain above this is no shadow


@register("matting")
class RuleMatting(Backend):
    """The segmenter's matte; its cast shadow moved into the effects layer by a colour/texture rule."""

    name = "rule"
    description = ("the segmenter's matte; plate-like darkened pixels beside it become the effects, its glow over "
                   "the scene is dropped (no weights)")
    effects_only = True  # without an effects layer it changes nothing
    needs_scene = True     # the shadow beside the matte is darkened against the scene ...
    scene_optional = True  # ... when the restorer gives one (without, the shadow is looked for in the matte only)

    def separate(self, clip: SplitClip, alpha: np.ndarray, background: np.ndarray, scene: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        alpha, effects = separate_effects(clip.frames, alpha, background, scene)
        return clear_glow(clip.frames, alpha, background if scene is None else scene, effects), effects


@register("matting")
class NetMatting(Backend):
    """The learned matting network (bundled weights, CPU) on each frame's box around the coarse matte."""

    name = "net"
    description = "learned matte and shadow from frame + scene plate + coarse matte (bundled 0.5 MB network, CPU)"
    needs_scene = True

    def __init__(self, model_path: str | None = None):
        self.model_path = str(model_path or BUNDLED)
        self._model = None

    @classmethod
    def availability(cls, model_path: str | None = None) -> tuple[bool, str]:
        folder = Path(model_path) if model_path else BUNDLED
        if not (folder / "matting.safetensors").is_file():
            return False, f"no matting.safetensors in {folder}"
        return True, ""

    def describe_config(self) -> dict:
        return {"name": self.name, "model_path": "bundled" if self.model_path == str(BUNDLED) else "given"}

    @property
    def model(self):
        if self._model is None:
            from .matting_net import load_matting

            self._model = load_matting(self.model_path)
        return self._model

    def separate(self, clip: SplitClip, alpha: np.ndarray, background: np.ndarray, scene: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        out_alpha = np.zeros_like(alpha)
        out_gain = np.ones_like(alpha)
        for t in range(len(alpha)):
            box = subject_box(alpha[t])
            if box is None:
                continue
            top, bottom, left, right = box
            region = (slice(top, bottom), slice(left, right))
            matte, gain = run_network(self.model, clip.frames[t][region], scene[t][region], alpha[t][region])
            out_alpha[t][region] = keep_core(matte, gain, alpha[t][region])
            out_gain[t][region] = gain
        return out_alpha, out_gain


def keep_core(matte: np.ndarray, gain: np.ndarray, coarse: np.ndarray, depth: int = CORE_DEPTH) -> np.ndarray:
    """The network's `matte` (h, w), except deep inside the segmenter's matte `coarse` (more than `depth` px from
    its edge), where a pixel the network calls neither subject nor shadow keeps the segmenter's value: inside a
    subject the plate can be wrong (a ghost of the subject itself, a never-seen hole), and a network that reads
    the frame against the plate then opens holes; near the edge and in the shadow the network decides."""
    size = 2 * depth + 1
    core = cv2.erode((coarse > 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    unsure = core & (gain > NO_SHADOW) & (matte < coarse)
    return np.where(unsure, coarse, matte).astype(np.float32)


def subject_box(coarse: np.ndarray, margin: int = MARGIN) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of `coarse` (H, W) > `COARSE_MIN` grown by `margin`, its sides rounded up to
    multiples of MULTIPLE inside the frame where the frame allows; None when the matte is empty."""
    window = mask_window(coarse > COARSE_MIN, margin)
    if window is None:
        return None
    height, width = coarse.shape
    top, bottom, left, right = window[0].start, window[0].stop, window[1].start, window[1].stop
    bottom, top = _round_span(top, bottom, height)
    right, left = _round_span(left, right, width)
    return top, bottom, left, right


def _round_span(start: int, end: int, limit: int) -> tuple[int, int]:
    """Grow [start, end) to a multiple of `MULTIPLE` long, within [0, limit) when it fits: (end, start)."""
    length = -(-(end - start) // MULTIPLE) * MULTIPLE
    end = min(start + length, limit)
    start = max(end - length, 0)
    return end, start


def run_network(model, frame: np.ndarray, plate: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One crop: (alpha (h, w) float32, gain (h, w) float32) from frame and plate (h, w, 3) uint8 and the coarse
    matte (h, w) float32; padded to multiples of MULTIPLE for the network and cropped back."""
    import torch

    with torch.inference_mode():
        image = torch.from_numpy(np.stack([frame, plate])).permute(0, 3, 1, 2).float() / 255
        matte = torch.from_numpy(np.ascontiguousarray(coarse, np.float32))[None, None]
        (frame_t, plate_t, coarse_t), (height, width) = pad_to_multiple(image[:1], image[1:], matte)
        alpha, gain = model(frame_t, plate_t, coarse_t)
    alpha = alpha[0, 0, :height, :width].numpy()
    gain = gain[0, 0, :height, :width].numpy()
    alpha = np.where(alpha < 0.02, 0.0, np.where(alpha > 0.98, 1.0, alpha)).astype(np.float32)
    gain = np.where(gain > 0.98, 1.0, gain).astype(np.float32)
    return alpha, gain
