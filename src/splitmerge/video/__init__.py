"""Video I/O, the clip types, compositing, layer transforms and previews."""

from .geometry import Box, ResizePlan, apply_resize, parse_size, plan_resize
from .io import (MatteWriter, VideoInfo, VideoReader, VideoWriter, iter_frames, probe, read_matte, read_video,
                 write_matte, write_video)
from .layers import Layers, LayersWriter, Video, composite, premultiply

__all__ = [
    "Box", "ResizePlan", "apply_resize", "parse_size", "plan_resize",
    "MatteWriter", "VideoInfo", "VideoReader", "VideoWriter", "iter_frames", "probe", "read_matte", "read_video",
    "write_matte", "write_video",
    "Layers", "LayersWriter", "Video", "composite", "premultiply",
]
