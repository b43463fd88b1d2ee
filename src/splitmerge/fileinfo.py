"""Facts about input files that provenance records need."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha1(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-1 hex digest of a file, read in chunks (constant memory)."""
    digest = hashlib.sha1()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
