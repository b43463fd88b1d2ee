"""splitmerge: layer-aware generative video composition (Split-then-Merge, arXiv 2511.20809).

Top-level API (DESIGN.md)::

    import splitmerge as sm
    video = sm.read_video(path, size=None, max_frames=None, start=0, stride=1)   # -> sm.Video
    sm.write_video(path, video)
    layers = sm.split(path_or_video, **options)                                  # -> sm.Layers
    meta = sm.split_to_folder(path_or_video, dir, **options)                    # streaming, bounded memory
    layers = sm.Layers.load(dir); layers.save(dir)
    out = sm.compose(fg=layers, background=path_or_video, method="copy-paste")  # -> sm.Composite

The Split stage lives in `splitmerge.decompose` (a package named ``split`` would be shadowed by `sm.split`).
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import (BudgetError, LayersFormatError, MediaError, MissingFileError, OptionError, ShapeError,
                     SplitMergeError, UnsafePathError)
from .decompose.pipeline import NoSubjectError, SplitConfig, split, split_to_folder
from .merge.compose import Composite, compose
from .samples import list_samples, sample_path
from .video import (Layers, LayersWriter, Video, VideoInfo, VideoReader, VideoWriter, composite, iter_frames,
                    premultiply, probe, read_matte, read_video, write_matte, write_video)

try:
    __version__ = _version("splitmerge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "SplitMergeError", "OptionError", "ShapeError", "MediaError", "MissingFileError", "LayersFormatError",
    "UnsafePathError", "BudgetError",
    "Layers", "LayersWriter", "Video", "VideoInfo", "VideoReader", "VideoWriter", "composite", "premultiply",
    "iter_frames", "probe", "read_matte", "read_video", "write_matte", "write_video",
    "list_samples", "sample_path",
    "split", "split_to_folder", "SplitConfig", "NoSubjectError", "compose", "Composite",
]
