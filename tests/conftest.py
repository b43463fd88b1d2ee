"""Shared fixtures: small real video files written through PyAV, with content that makes errors visible."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pattern_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: smooth colour gradients plus a bright square moving right, distinct per frame."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xs / max(width - 1, 1), ys / max(height - 1, 1), 0.5 + 0.0 * xs], axis=-1)
    tint = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    side = max(2, min(height, width) // 4)
    for t in range(count):
        image = (base * 0.6 + tint * 0.4) * 255
        left = (t * 3) % max(1, width - side)
        image[height // 3: height // 3 + side, left:left + side] = (250, 240, 30)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def frame_index_color(index: int) -> tuple[int, int, int]:
    """A solid colour that encodes a frame index robustly through lossy coding (coarse steps of 40)."""
    return (40 * (index % 6) + 20, 40 * ((index // 6) % 6) + 20, 128)


def decode_index(frame: np.ndarray) -> int:
    r, g, _ = frame.reshape(-1, 3).mean(axis=0)
    return int(round((r - 20) / 40)) + 6 * int(round((g - 20) / 40))


def write_raw_video(path: Path, frames, *, rate=Fraction(25), pts=None, time_base=None, rotation=None,
                    codec="libx264", pix_fmt="yuv420p") -> Path:
    """Write frames with full control of timestamps and rotation (what user footage can carry)."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = pix_fmt
    if rotation is not None:
        stream.set_display_rotation(rotation)
    encoded = []
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if pts is not None:
            frame.pts = pts[index]
            frame.time_base = time_base
        encoded.append(frame)
    return encode_and_close(container, stream, encoded, path)


def encode_and_close(container, stream, frames, path: Path) -> Path:
    """Encode `frames` (PyAV frames) into `stream`, flush the encoder, close the container."""
    for frame in [*frames, None]:
        for packet in stream.encode(frame):
            container.mux(packet)
    container.close()
    return path


def audio_only(path: Path) -> Path:
    """A one-second AAC file with no video stream."""
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    stream.layout = "mono"
    samples = (np.sin(np.arange(16000) / 10) * 0.3).astype(np.float32)[None]
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate = 16000
    frame.pts, frame.time_base = 0, Fraction(1, 16000)
    return encode_and_close(container, stream, [frame], path)


@pytest.fixture
def clip_path(tmp_path) -> Path:
    """A 24-frame 64x96 H.264 clip at 25 fps."""
    import splitmerge as sm

    path = tmp_path / "clip.mp4"
    sm.write_video(path, sm.Video(pattern_frames(24, 64, 96), 25.0))
    return path


def moving_subject_clip(count: int = 24, height: int = 72, width: int = 108, camera: str = "static",
                        speed: float = 2.0, seed: int = 0):
    """A small ground-truth clip: a striped disc moving right over a smooth random texture.

    camera: "static", "pan" (the view slides 1.5 px/frame right) or "none" (no subject: a static scene).
    Returns (frames (T, H, W, 3) uint8, alpha (T, H, W) float32, background (T, H, W, 3) uint8).
    """
    import cv2

    rng = np.random.default_rng(seed)
    scene_w = width + int(count * 1.5) + 8
    noise = rng.uniform(0, 255, size=(height // 4 + 2, scene_w // 4 + 2, 3)).astype(np.float32)
    scene = cv2.resize(noise, (scene_w, height), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(cv2.GaussianBlur(scene, (0, 0), 1.0) * 0.8 + 25, 0, 255)
    radius = height / 5
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames, alphas, backgrounds = [], [], []
    for t in range(count):
        offset = 1.5 * t if camera == "pan" else 0.0
        shift = np.float32([[1, 0, -offset], [0, 1, 0]])
        background = cv2.warpAffine(scene, shift, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
        cx, cy = width / 4 + speed * t - offset, height / 2
        alpha = np.clip(radius - np.hypot(xs - cx, ys - cy) + 0.5, 0, 1).astype(np.float32)
        if camera == "none":
            alpha[:] = 0
        stripes = np.where(((xs - cx) // 4) % 2 == 0, 230.0, 40.0)
        subject = np.stack([stripes, 200 - stripes * 0.5, 255 - stripes], axis=-1)
        frame = subject * alpha[..., None] + background * (1 - alpha[..., None])
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        alphas.append(alpha)
        backgrounds.append(np.clip(np.rint(background), 0, 255).astype(np.uint8))
    return np.stack(frames), np.stack(alphas), np.stack(backgrounds)
