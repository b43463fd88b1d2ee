"""`splitmerge dataset export`: a dataset's ok clips as WebDataset shards or as CogVideoX-style text lists.

- ``webdataset``: tar shards ``shard-000000.tar``... of at most `per_shard` samples. A sample is the files of one
  clip under its id: ``<id>.source.mp4``, ``<id>.foreground.mp4``, ``<id>.alpha.mkv``, ``<id>.background.mp4``,
  ``<id>.txt`` (caption) and ``<id>.json`` (its manifest row). `StmIterableDataset` reads them back.
- ``cogvideox-lists``: aligned text files, one clip per line, as CogVideoX fine-tuning scripts read them:
  ``prompts.txt``, ``videos.txt`` (the originals: the targets), ``foregrounds.txt``, ``backgrounds.txt``,
  ``masks.txt``; paths are relative to the output folder, nothing is copied.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from ..atomic import atomic_file
from ..errors import OptionError
from .manifest import read_manifest

FORMATS = ("webdataset", "cogvideox-lists")
LAYER_FILES = {"source.mp4": "source.mp4", "foreground.mp4": "foreground.mp4", "alpha.mkv": "alpha.mkv",
               "background.mp4": "background.mp4"}


def _selected(dataset: Path, split: str | None) -> list[dict]:
    rows = [row for row in read_manifest(dataset) if row["status"] == "ok" and (split is None or row["split"] == split)]
    if not rows:
        raise OptionError(f"{dataset}: no ok clips{f' in split {split!r}' if split else ''} to export")
    return rows


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same dataset, the same shards
    archive.addfile(info, io.BytesIO(data))


def export_webdataset(dataset: Path, output: Path, split: str | None, per_shard: int) -> list[Path]:
    rows = _selected(dataset, split)
    output.mkdir(parents=True, exist_ok=True)
    shards = []
    for number, first in enumerate(range(0, len(rows), per_shard)):
        path = output / f"shard-{number:06d}.tar"
        with atomic_file(path) as temporary, tarfile.open(temporary, "w", format=tarfile.USTAR_FORMAT) as archive:
            for row in rows[first:first + per_shard]:
                folder = dataset / row["clip"]
                for member, filename in LAYER_FILES.items():
                    _add_bytes(archive, f"{row['id']}.{member}", (folder / filename).read_bytes())
                _add_bytes(archive, f"{row['id']}.txt", row["caption"].encode())
                _add_bytes(archive, f"{row['id']}.json", json.dumps(row, sort_keys=True).encode())
        shards.append(path)
    return shards


def export_cogvideox_lists(dataset: Path, output: Path, split: str | None) -> list[Path]:
    rows = _selected(dataset, split)
    output.mkdir(parents=True, exist_ok=True)
    columns = {"prompts.txt": lambda row: row["caption"], "videos.txt": "source.mp4",
               "foregrounds.txt": "foreground.mp4", "backgrounds.txt": "background.mp4", "masks.txt": "alpha.mkv"}
    written = []
    for name, column in columns.items():
        if callable(column):
            lines = [column(row).replace("\n", " ") for row in rows]
        else:
            lines = [os.path.relpath(dataset / row["clip"] / column, output) for row in rows]
        with atomic_file(output / name) as temporary:
            temporary.write_text("\n".join(lines) + "\n")
        written.append(output / name)
    return written


def export(dataset: str | Path, output: str | Path, fmt: str, split: str | None = "train", per_shard: int = 100
           ) -> list[Path]:
    """Export the ok clips of `split` (None: all) in format `fmt`; returns the files written."""
    if fmt not in FORMATS:
        raise OptionError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not isinstance(per_shard, int) or per_shard < 1:
        raise OptionError(f"per_shard {per_shard!r}: must be a positive integer")
    dataset, output = Path(dataset), Path(output)
    if fmt == "webdataset":
        return export_webdataset(dataset, output, split, per_shard)
    return export_cogvideox_lists(dataset, output, split)
