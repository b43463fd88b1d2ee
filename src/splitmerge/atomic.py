"""Atomic writes: produce output under a temporary name beside the target, then rename it into place.

A crash or an exception leaves either the previous content or nothing at the target, never a half-written file
or folder. Temporary names start with ``.`` and end with ``.partial`` so that they are easy to spot and clean.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temporary_sibling(target: str | os.PathLike) -> Path:
    """A fresh hidden name beside `target` with the same suffix (container formats are guessed from it)."""
    target = Path(target)
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.partial{target.suffix}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(target)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it replaces the folder `path`.

    An existing folder at `path` is moved aside and deleted only after the new one is in place. A crash leaves a
    complete old or complete new folder at `path`, except between the two renames, where the complete old folder
    waits under a hidden ``.old.partial`` name; never a half-written folder at `path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    temporary.mkdir()
    try:
        yield temporary
        if target.exists():
            retired = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old.partial")
            os.replace(target, retired)
            os.replace(temporary, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, target)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
