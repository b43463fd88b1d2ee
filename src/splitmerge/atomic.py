"""Atomic writes: produce output under a temporary name beside the target, then rename it into place.

A crash or an exception leaves either the previous content or nothing at the target, never a half-written file
or folder. Temporary names start with ``.``, hold ``.partial`` and name their owner (a hash of the host name and
the process id), so that what a killed process left is removed the next time anything is written in that folder
(`sweep_stale`, once per folder and process), while another live process's work in progress is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterator


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_OWNED = re.compile(r"^\.(?P<name>.*)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}\.(?P<old>old\.)?partial")


def _tag() -> str:
    """This process's part of a temporary name: host hash, process id, a random part."""
    return f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def temporary_sibling(target: str | os.PathLike) -> Path:
    """A fresh hidden name beside `target` with the same suffix (container formats are guessed from it)."""
    target = Path(target)
    _sweep_once(target.parent)
    return target.with_name(f".{target.stem}.{_tag()}.partial{target.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


_SWEPT: set[str] = set()  # folders this process has swept (a dataset's clips/ holds one entry per clip)


def _sweep_once(folder: Path) -> None:
    """`sweep_stale(folder)` the first time this process writes there: what dead processes left is gone, and a
    folder written thousands of times (a build's clips/ and rows/) is listed once, not once per write."""
    key = os.path.abspath(folder)
    if key not in _SWEPT:
        _SWEPT.add(key)
        sweep_stale(folder)


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders in `folder` (not below it) left by dead processes of this host;
    returns what was removed. Entries of live processes, of other hosts, and older unowned names are kept. A
    folder retired by `atomic_dir` whose replacement never arrived is put back in place instead."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        owner = _OWNED.match(entry.name)
        if owner is None or owner["host"] != _HOST or _alive(int(owner["pid"])):
            continue
        path = Path(entry.path)
        original = path.with_name(owner["name"])
        if owner["old"] and not original.exists():
            os.replace(path, original)
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


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
    _sweep_once(target.parent)
    temporary = target.with_name(f".{target.name}.{_tag()}.partial")
    temporary.mkdir()
    try:
        yield temporary
        if target.exists():
            retired = target.with_name(f".{target.name}.{_tag()}.old.partial")
            os.replace(target, retired)
            os.replace(temporary, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, target)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
