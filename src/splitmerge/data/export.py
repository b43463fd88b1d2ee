"""`splitmerge dataset export`: a dataset's ok clips as WebDataset shards or as CogVideoX-style text lists.

- ``webdataset``: tar shards ``shard-000000.tar``... of at most `per_shard` samples. A sample is the files of one
  clip under its id: ``<id>.source.mp4``, ``<id>.foreground.mp4``, ``<id>.alpha.mkv``, ``<id>.background.mp4``,
  ``<id>.txt`` (caption) and ``<id>.json`` (its manifest row), and ``<id>.effects.mkv`` when the clip has effects
  (a version 2 Layers folder). `StmIterableDataset` reads them back.
- ``cogvideox-lists``: aligned text files, one clip per line, as CogVideoX fine-tuning scripts read them:
  ``prompts.txt``, ``videos.txt`` (the originals: the targets), ``foregrounds.txt``, ``backgrounds.txt``,
  ``masks.txt``; paths are relative to the output folder, nothing is copied.

Nothing is written until every selected clip's files are found inside the dataset; the output folder is then
filled under a temporary name and renamed into place (`atomic.atomic_dir`): a failed export leaves nothing.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import tarfile
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import OptionError, UnsafePathError
from ..paths import check_output, safe_name
from .manifest import MANIFEST, clip_files, clip_folder, read_bytes, read_manifest

FORMATS = ("webdataset", "cogvideox-lists")
LAYER_FILES = {"source.mp4": "source.mp4", "foreground.mp4": "foreground.mp4", "alpha.mkv": "alpha.mkv",
               "background.mp4": "background.mp4"}
OPTIONAL_LAYER_FILES = {"effects.mkv": "effects.mkv"}  # member suffix: file, exported when the clip has it
USTAR_NAME = 100  # longest member name of a USTAR tar without a folder part
LISTS = ("prompts.txt", "videos.txt", "foregrounds.txt", "backgrounds.txt", "masks.txt")
WRITTEN = ("shard-*.tar", *LISTS)  # what an export writes: an existing output folder holding only these is replaced


def check_replaceable(folder: Path, patterns: tuple[str, ...], flag: str = "-o") -> Path:
    """`folder` when it is new, empty or holds only files a previous run wrote (names matching `patterns`): the
    output is replaced whole (`atomic_dir`), so a folder with anything else in it is refused rather than emptied."""
    if not folder.is_dir():
        return folder
    others = sorted(entry.name for entry in folder.iterdir() if entry.is_symlink() or not entry.is_file()
                    or not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in patterns))
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise OptionError(f"{flag} {folder}: holds {others[0]!r}{more}, which this command does not write and would "
                          "delete; give a new or empty folder")
    return folder


def _selected(dataset: Path, split: str | None) -> list[tuple[dict, dict[str, Path]]]:
    """The ok rows of `split` (None: all), each with its layer files (and those of `OPTIONAL_LAYER_FILES` it has),
    all checked present before anything is written (a missing or outside file raises naming it)."""
    rows = [row for row in read_manifest(dataset) if row["status"] == "ok" and (split is None or row["split"] == split)]
    if not rows:
        raise OptionError(f"{dataset}: no ok clips{f' in split {split!r}' if split else ''} to export")
    selected = []
    for row in rows:
        folder = clip_folder(dataset, row)
        present = tuple(name for name in OPTIONAL_LAYER_FILES.values() if os.path.lexists(folder / name))
        selected.append((row, clip_files(dataset, row, (*LAYER_FILES.values(), *present))))
    return selected


def _member(key: str, suffix: str) -> str:
    """The tar member name ``<id>.<suffix>``: a plain name that fits a USTAR header, whose WebDataset key (up to
    the first dot) is the id."""
    name = safe_name(f"{safe_name(key, f'{MANIFEST}: id')}.{suffix}", "tar member")
    if "." in key:
        raise UnsafePathError(f"{MANIFEST}: id {key!r}: holds a dot, which would split its WebDataset key")
    if len(name.encode()) > USTAR_NAME:
        raise UnsafePathError(f"{MANIFEST}: id {key!r}: too long for a tar member name "
                              f"(at most {USTAR_NAME - len(suffix) - 1} characters here)")
    return name


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same dataset, the same shards
    archive.addfile(info, io.BytesIO(data))


def export_webdataset(dataset: Path, output: Path, split: str | None, per_shard: int) -> list[Path]:
    selected = _selected(dataset, split)
    for row, _ in selected:  # every member name is checked before anything is written
        for suffix in (*LAYER_FILES, *OPTIONAL_LAYER_FILES, "txt", "json"):
            _member(row["id"], suffix)
    shards = []
    with atomic_dir(output) as folder:
        for number, first in enumerate(range(0, len(selected), per_shard)):
            name = f"shard-{number:06d}.tar"
            with tarfile.open(folder / name, "w", format=tarfile.USTAR_FORMAT) as archive:
                for row, files in selected[first:first + per_shard]:
                    _add_sample(archive, row, files)
            shards.append(output / name)
    return shards


def _add_sample(archive: tarfile.TarFile, row: dict, files: dict[str, Path]) -> None:
    """One clip's members: its layer files, its caption and its manifest row, under its id."""
    for member, filename in (*LAYER_FILES.items(), *OPTIONAL_LAYER_FILES.items()):
        if filename in files:  # an optional file only when the clip has it
            _add_bytes(archive, _member(row["id"], member), read_bytes(files[filename]))
    _add_bytes(archive, _member(row["id"], "txt"), row["caption"].encode())
    _add_bytes(archive, _member(row["id"], "json"), json.dumps(row, sort_keys=True).encode())


def export_cogvideox_lists(dataset: Path, output: Path, split: str | None) -> list[Path]:
    selected = _selected(dataset, split)
    columns = dict(zip(LISTS, (None, "source.mp4", "foreground.mp4", "background.mp4", "alpha.mkv"), strict=True))
    with atomic_dir(output) as folder:
        for name, filename in columns.items():
            if filename is None:  # one prompt per line: a caption's own line breaks become spaces
                lines = [" ".join(row["caption"].splitlines()) for row, _ in selected]
            else:  # relative to the final folder (the temporary one is its sibling)
                lines = [os.path.relpath(files[filename], output) for _, files in selected]
            (folder / name).write_text("\n".join(lines) + "\n")
    return [output / name for name in columns]


def export(dataset: str | Path, output: str | Path, fmt: str, split: str | None = "train", per_shard: int = 100
           ) -> list[Path]:
    """Export the ok clips of `split` (None: all) in format `fmt` into the folder `output` (replaced whole; never
    the dataset or inside it, `paths.check_output`, nor a folder holding other files, `check_replaceable`);
    returns the files written."""
    if fmt not in FORMATS:
        raise OptionError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not isinstance(per_shard, int) or per_shard < 1:
        raise OptionError(f"per_shard {per_shard!r}: must be a positive integer")
    dataset = Path(dataset)
    output = check_replaceable(check_output(output, [dataset], kind="folder", flag="-o"), WRITTEN)
    if fmt == "webdataset":
        return export_webdataset(dataset, output, split, per_shard)
    return export_cogvideox_lists(dataset, output, split)
