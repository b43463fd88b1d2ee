"""Path safety: paths read from files stay inside their folder, outputs never land on their inputs.

Two guards, used by every command (docs/robustness.md):
- `inside(root, relative, what)`: a path read from a file (a manifest's clip, a bench's case id, a layers.json
  entry) is relative and, once resolved (symlinks followed), stays inside `root`. Anything else is refused.
  `safe_name(name, what)` is its twin for a name that becomes a file or archive member (an id): one plain
  path component.
- `check_output(output, inputs, kind)`: an output is not one of its inputs, does not hold an input that writing
  it would replace, is not inside an input folder, is of the expected kind (file or folder) and can be created.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from .errors import OptionError, UnsafePathError

# Names that become files or archive members: letters, digits and . _ - + =, not starting with a dot.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+=\-][A-Za-z0-9._+=\-]*")
MAX_NAME = 200


def safe_name(name: object, what: str) -> str:
    """`name` when it is one plain path component (no separators, no ``..``, no leading dot, printable), else
    `UnsafePathError` naming `what` (e.g. ``"manifest.parquet: id"``)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise UnsafePathError(f"{what} {_shown(name)}: not a plain name (letters, digits, . _ - + =; "
                              f"at most {MAX_NAME} characters; no folders)")
    return name


def inside(root: str | os.PathLike, relative: object, what: str) -> Path:
    """`root / relative` when `relative` (read from a file) is a relative path that stays inside `root` after
    resolving ``..`` and symlinks; else `UnsafePathError` naming `what`."""
    if not isinstance(relative, (str, os.PathLike)) or not str(relative) or "\x00" in str(relative):
        raise UnsafePathError(f"{what} {_shown(relative)}: expected a relative path inside {root}")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise UnsafePathError(f"{what} {_shown(relative)}: an absolute path; expected one inside {root}")
    try:
        base = Path(root).resolve()
        target = (base / candidate).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise UnsafePathError(f"{what} {_shown(relative)}: a symlink loop") from None
    if base not in target.parents:
        raise UnsafePathError(f"{what} {_shown(relative)}: leads outside {root}" if target != base else
                              f"{what} {_shown(relative)}: names {root} itself, not something inside it")
    return Path(root) / candidate


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                 kind: str = "file", suffixes: tuple[str, ...] | None = None, flag: str = "-o") -> Path:
    """Refuse an output that would overwrite, replace or nest in its inputs, or that cannot be written.

    Args:
        output: the file or folder a command will write (atomically: a folder is replaced whole).
        inputs: files and folders the command reads; `None` entries are ignored.
        kind: ``"file"`` or ``"folder"``: what `output` must be (an existing one of the other kind is refused).
        suffixes: for a file, the accepted extensions (lower case, with the dot).
        flag: the option's name in messages.
    Returns `output` as a `Path`. Raises `OptionError` naming the flag and the problem.
    """
    out = Path(output)
    if not str(output) or "\x00" in str(output):
        raise OptionError(f"{flag} {str(output)!r}: not a usable path")
    if kind == "file" and out.is_dir():
        raise OptionError(f"{flag} {out}: is a folder, expected a file name")
    if kind == "folder" and out.exists() and not out.is_dir():
        raise OptionError(f"{flag} {out}: is a file, expected a folder")
    if kind == "file" and suffixes and out.suffix.lower() not in suffixes:
        raise OptionError(f"{flag} {out}: unknown extension {out.suffix or '(none)'!r}; "
                          f"use {' or '.join(suffixes)}")
    resolved = _resolved(out, flag)
    for given in inputs:
        if given is None or not str(given):
            continue
        source = _resolved(Path(given), "input")
        if resolved == source:
            raise OptionError(f"{flag} {out}: is also an input; write the result elsewhere")
        if source.is_dir() and _contains(source, resolved):
            raise OptionError(f"{flag} {out}: is inside the input folder {given}; write the result elsewhere")
        if kind == "folder" and _contains(resolved, source):
            raise OptionError(f"{flag} {out}: holds the input {given}, which writing it would replace")
    _check_creatable(out, flag)
    return out


def check_own_folder(folder: Path, marker: str, kind: str) -> None:
    """Refuse an existing, non-empty `folder` without `marker` (the file every folder of `kind` holds, e.g.
    ``bench.json`` for "a benchmark"): it holds someone else's files, which writing it whole would replace."""
    if folder.is_dir() and any(folder.iterdir()) and not (folder / marker).is_file():
        raise OptionError(f"{folder}: exists, is not empty and is not {kind}; refusing to write into it")


def _resolved(path: Path, flag: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise OptionError(f"{flag} {path}: a symlink loop") from None


def _check_creatable(out: Path, flag: str) -> None:
    """The nearest existing ancestor of `out` is a writable folder."""
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OptionError(f"{flag} {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OptionError(f"{flag} {out}: cannot write in {ancestor} (permission denied or read-only)")
    if out.exists() and not os.access(out, os.W_OK):
        raise OptionError(f"{flag} {out}: exists and is not writable")
