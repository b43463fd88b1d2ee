"""The Dataset folder's manifest: one row per candidate clip, kept as one JSON file per row while building (each
written atomically: the commit point of a clip) and gathered into ``manifest.parquet`` at the end of every run.

Columns (`COLUMNS`): id, split, status (ok / skipped / failed), reason, clip (``clips/<id>`` when ok, else ""),
caption, num_frames, fps, height, width, fg_ratio, presence, kind (video / synthetic), source_path, source_sha1,
start_frame, stride, seed, license, url, backends (JSON text), seconds (JSON text: per stage), seconds_total.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..atomic import atomic_file
from ..errors import LayersFormatError

STATUSES = ("ok", "skipped", "failed")
COLUMNS = {
    "id": "string", "split": "string", "status": "string", "reason": "string", "clip": "string",
    "caption": "string", "num_frames": "int32", "fps": "float64", "height": "int32", "width": "int32",
    "fg_ratio": "float64", "presence": "float64", "kind": "string", "source_path": "string",
    "source_sha1": "string", "start_frame": "int64", "stride": "int32", "seed": "int64", "license": "string",
    "url": "string", "backends": "string", "seconds": "string", "seconds_total": "float64",
}
MANIFEST = "manifest.parquet"
ROWS = "rows"
CLIPS = "clips"


def empty_row() -> dict:
    """A row with every column at its empty value."""
    values = {"string": "", "int32": 0, "int64": 0, "float64": math.nan}
    return {name: values[kind] for name, kind in COLUMNS.items()}


def write_row(dataset: Path, row: dict) -> Path:
    """Write one row as ``rows/<id>.json``, atomically (a clip counts as done once its row exists)."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"manifest row has unknown columns: {sorted(unknown)}")
    path = dataset / ROWS / f"{row['id']}.json"
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps({**empty_row(), **row}, sort_keys=True) + "\n")
    return path


def done_ids(dataset: Path) -> set[str]:
    """Ids whose row is written."""
    folder = dataset / ROWS
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def read_rows(dataset: Path) -> list[dict]:
    """Every written row, sorted by id."""
    rows = []
    for path in sorted((dataset / ROWS).glob("*.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except ValueError:
            raise LayersFormatError(f"{path}: not a JSON manifest row") from None
    return sorted(rows, key=lambda row: row["id"])


def write_manifest(dataset: Path, rows: list[dict]) -> Path:
    """``manifest.parquet`` from `rows`, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()]
    schema = pa.schema(fields)
    columns = {name: [row.get(name, empty_row()[name]) for row in rows] for name in COLUMNS}
    table = pa.Table.from_pydict(columns, schema=schema)
    path = dataset / MANIFEST
    with atomic_file(path) as temporary:
        pq.write_table(table, temporary)
    return path


def read_manifest(dataset: str | Path) -> list[dict]:
    """The rows of a Dataset folder's ``manifest.parquet`` as dicts, sorted by id."""
    import pyarrow.parquet as pq

    path = Path(dataset) / MANIFEST
    if not path.is_file():
        raise LayersFormatError(f"{dataset}: no {MANIFEST} (not a built dataset?)")
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise LayersFormatError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
    missing = set(COLUMNS) - set(table.column_names)
    if missing:
        raise LayersFormatError(f"{path}: missing columns {', '.join(sorted(missing))}")
    return sorted(table.to_pylist(), key=lambda row: row["id"])
