"""Where a build's videos come from: files, folders (recursive), globs, and CSV/JSONL lists.

A list file names one video per row with optional provenance: ``path`` (required; relative paths are relative to
the list file), ``caption`` (used instead of a captioner), ``license`` and ``url`` (carried into the manifest).
CSV needs a header row; JSONL is one JSON object per line.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingFileError, OptionError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
LIST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class SourceVideo:
    """One input video and what its list said about it."""

    path: str
    caption: str | None = None
    license: str | None = None
    url: str | None = None


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _text(value) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value or None


def _row_source(row: dict, listing: Path, line: int) -> SourceVideo:
    if not isinstance(row, dict) or not _text(row.get("path")):
        raise OptionError(f"{listing}: row {line} has no path")
    path = Path(str(row["path"]).strip()).expanduser()
    if not path.is_absolute():
        path = listing.parent / path
    return SourceVideo(str(path), _text(row.get("caption")), _text(row.get("license")), _text(row.get("url")))


def read_list(listing: Path) -> list[SourceVideo]:
    """The videos named by a CSV (with a header) or JSONL list file (UTF-8)."""
    try:
        return _read_list(listing)
    except UnicodeDecodeError as error:
        raise OptionError(f"{listing}: not UTF-8 text (byte {error.start}); save the list as UTF-8") from None


def _read_list(listing: Path) -> list[SourceVideo]:
    sources = []
    if listing.suffix.lower() == ".csv":
        with listing.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise OptionError(f"{listing}: the CSV header has no 'path' column")
            for line, row in enumerate(reader, start=2):
                sources.append(_row_source(row, listing, line))
    else:
        with listing.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except ValueError:
                    raise OptionError(f"{listing}: line {line} is not JSON") from None
                sources.append(_row_source(row, listing, line))
    return sources


def collect_sources(specs: list[str | os.PathLike]) -> list[SourceVideo]:
    """Expand `specs` (files, folders, globs, list files) into videos, each once, in a stable order.

    A folder is searched recursively for video suffixes (`VIDEO_SUFFIXES`); a glob may use ``**``. Order: the
    order of `specs`, then sorted paths within a folder or glob; a video named twice keeps its first entry.
    Raises `MissingFileError` for a path that does not exist or a glob that matches nothing.
    """
    if not specs:
        raise OptionError("no sources given")
    found: list[SourceVideo] = []
    for spec in specs:
        text = str(spec)
        path = Path(text).expanduser()
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found.extend(read_list(path))
        elif path.is_dir():
            found.extend(SourceVideo(str(p)) for p in sorted(path.rglob("*")) if p.is_file() and _is_video(p))
        elif path.is_file():
            found.append(SourceVideo(str(path)))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            videos = [SourceVideo(str(p)) for p in matches if p.is_file() and _is_video(p)]
            if not videos:
                raise MissingFileError(f"{text}: the pattern matches no video")
            found.extend(videos)
        else:
            raise MissingFileError(f"{text}: no such file or folder")
    unique: dict[str, SourceVideo] = {}
    for source in found:
        unique.setdefault(str(Path(source.path).resolve()), source)
    return list(unique.values())
