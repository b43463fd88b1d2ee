"""The Dataset folder's manifest: one row per candidate clip, kept as one JSON file per row while building (each
written atomically: the commit point of a clip) and gathered into ``manifest.parquet`` at the end of every run.

Columns (`COLUMNS`): id, split, status (ok / skipped / failed), reason, clip (``clips/<id>`` when ok, else ""),
caption, num_frames, fps, height, width, fg_ratio, presence, kind (video / synthetic), source_path, source_sha1,
start_frame, stride, seed, license, url, backends (JSON text), seconds (JSON text: per stage), seconds_total.

A manifest is read from disk and may have been edited by hand or by anyone: `read_manifest` checks it before any
command uses it (docs/robustness.md). Every column is there with its type and no empty (null) cells; every id is a
plain name (it names files: ``rows/<id>.json``, ``clips/<id>``, tar members, benchmark cases; only the preview
page, which just shows ids, escaped, reads them as they are); every ok row's clip is a relative path that stays
inside the dataset (`paths.inside`) and its numbers are usable. Messages name the row (counted from 1, in file
order) and the field.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

from ..atomic import atomic_file
from ..errors import LayersFormatError, MissingFileError, SplitMergeError
from ..paths import inside, safe_name

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
# What a build writes in a Dataset folder (build.json: `build.BUILD_FILE`): commands that write beside them
# (stats, preview) must not land on them.
DATASET_ENTRIES = (MANIFEST, ROWS, CLIPS, "build.json", "README.md")
CLIP_FILES = ("layers.json", "source.mp4", "foreground.mp4", "alpha.mkv", "background.mp4")  # a Layers folder


def empty_row() -> dict:
    """A row with every column at its empty value."""
    values = {"string": "", "int32": 0, "int64": 0, "float64": math.nan}
    return {name: values[kind] for name, kind in COLUMNS.items()}


def write_row(dataset: Path, row: dict) -> Path:
    """Write one row as ``rows/<id>.json``, atomically (a clip counts as done once its row exists)."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"manifest row has unknown columns: {sorted(unknown)}")
    path = dataset / ROWS / f"{safe_name(row['id'], 'manifest row: id')}.json"
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps({**empty_row(), **row}, sort_keys=True) + "\n")
    return path


def _row_files(dataset: Path) -> list[Path]:
    """The written row files, sorted (hidden names, such as an unfinished write's temporary file, left out)."""
    folder = dataset / ROWS
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []


def done_ids(dataset: Path) -> set[str]:
    """Ids whose row is written."""
    return {p.stem for p in _row_files(dataset)}


def read_rows(dataset: Path) -> list[dict]:
    """Every written row, sorted by id."""
    rows = []
    for path in _row_files(dataset):
        try:
            row = json.loads(path.read_text())
        except (ValueError, OSError):  # UnicodeDecodeError is a ValueError
            raise LayersFormatError(f"{path}: not a JSON manifest row") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise LayersFormatError(f"{path}: not a manifest row (an object with a text id)")
        rows.append(row)
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


def read_table(dataset: str | Path) -> list[dict]:
    """The rows of a Dataset folder's ``manifest.parquet`` as dicts, in file order, with every column of `COLUMNS`
    at its type and no null cell (extra columns are dropped); the rows themselves are not checked (`check_row`).
    Raises `LayersFormatError` naming the file (and the column) when it is missing, not Parquet, or malformed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(dataset) / MANIFEST
    if not path.is_file():
        raise LayersFormatError(f"{dataset}: no {MANIFEST} (not a built dataset?)")
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise LayersFormatError(f"{path}: unreadable ({_first_line(error)})") from None
    missing = set(COLUMNS) - set(table.column_names)
    if missing:
        raise LayersFormatError(f"{path}: missing columns {', '.join(sorted(missing))}")
    columns = {name: _typed_column(path, table, name, getattr(pa, kind)()) for name, kind in COLUMNS.items()}
    return pa.table(columns).to_pylist()


def _typed_column(path: Path, table, name: str, expected):
    """Column `name` of `table` cast to `expected` (text stays text, numbers stay numbers: an int64 num_frames
    is fine, a fractional or text one is not), with no null cell."""
    import pyarrow as pa

    if table.column_names.count(name) > 1:
        raise LayersFormatError(f"{path}: column {name} appears {table.column_names.count(name)} times")
    column = table.column(name).combine_chunks()
    if pa.types.is_dictionary(column.type):  # pandas categoricals
        column = column.dictionary_decode()
    given = column.type
    if pa.types.is_string(expected):
        usable = pa.types.is_string(given) or pa.types.is_large_string(given)
    else:
        usable = pa.types.is_integer(given) or pa.types.is_floating(given)
    try:
        column = column.cast(expected) if usable else None
    except pa.ArrowException:
        column = None
    if column is None:
        whole = " (whole numbers in range)" if pa.types.is_integer(expected) else ""
        raise LayersFormatError(f"{path}: column {name} holds {given} values, expected {expected}{whole}")
    if column.null_count:
        first = column.is_null().to_pylist().index(True)
        raise LayersFormatError(f"{path} row {first + 1}: {name} is empty (null)")
    return column


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def check_row(dataset: str | Path, row: dict, number: int, plain_id: bool = True) -> dict:
    """`row` (row `number` of the manifest, from 1) when it is usable, else a `SplitMergeError` naming the row and
    the field: the id is a plain name (unless `plain_id` is off: a reader that only shows ids), the status known;
    an ok row's clip stays inside the dataset and its frame count, size, fps and foreground ratio are sound."""
    what = f"{Path(dataset) / MANIFEST} row {number}"
    if plain_id:
        safe_name(row["id"], f"{what}: id")
    if row["status"] not in STATUSES:
        raise LayersFormatError(f"{what}: status {row['status']!r}: expected one of {', '.join(STATUSES)}")
    if row["status"] != "ok":
        return row
    inside(dataset, row["clip"], f"{what}: clip")
    for name in ("num_frames", "height", "width"):
        if row[name] < 1:
            raise LayersFormatError(f"{what}: {name} {row[name]!r}: an ok clip needs a positive integer")
    if not (math.isfinite(row["fps"]) and row["fps"] > 0):
        raise LayersFormatError(f"{what}: fps {row['fps']!r}: an ok clip needs a positive number")
    if not (math.isfinite(row["fg_ratio"]) and 0 <= row["fg_ratio"] <= 1):
        raise LayersFormatError(f"{what}: fg_ratio {row['fg_ratio']!r}: an ok clip needs a number in [0, 1]")
    return row


def id_number(key: str) -> int:
    """A clip's number for its random draws, in [0, 2**32): its id read as hex (ids are hashes), else a CRC of
    the id."""
    try:
        return int(key, 16) % (2**32)
    except ValueError:
        return zlib.crc32(key.encode())


def read_manifest(dataset: str | Path, plain_ids: bool = True) -> list[dict]:
    """The rows of a Dataset folder's ``manifest.parquet`` as dicts, sorted by id, each checked (`read_table`,
    `check_row`; ids unique): the first problem raises a `SplitMergeError` naming the file, row and field.

    Ids name files (``rows/<id>.json``, ``clips/<id>``, tar members, benchmark cases), so each must be a plain name
    (`paths.safe_name`); only a reader that never makes a name of one (the preview page, which shows them escaped)
    may pass ``plain_ids=False``."""
    rows = read_table(dataset)
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        check_row(dataset, row, number, plain_ids)
        if row["id"] in seen:
            raise LayersFormatError(f"{Path(dataset) / MANIFEST} row {number}: id {row['id']!r}: already the id of "
                                    f"row {seen[row['id']]}")
        seen[row["id"]] = number
    return sorted(rows, key=lambda row: row["id"])


def clip_folder(dataset: str | Path, row: dict) -> Path:
    """The Layers folder of an ok row (read by `read_manifest`): ``dataset / clip``, checked to stay inside."""
    return inside(dataset, row["clip"], f"{Path(dataset) / MANIFEST} id {row['id']}: clip")


def clip_files(dataset: str | Path, row: dict, names: tuple[str, ...] = CLIP_FILES) -> dict[str, Path]:
    """Files `names` of an ok row's Layers folder: each an existing file inside the dataset (a symlink out is
    refused), else a `SplitMergeError` naming the first at fault."""
    clip_folder(dataset, row)
    files = {}
    for name in names:
        path = inside(dataset, f"{row['clip']}/{name}", f"{Path(dataset) / MANIFEST} id {row['id']}: {name}")
        if not path.is_file():
            raise MissingFileError(f"{path}: missing (a file of the clip of manifest id {row['id']})")
        files[name] = path
    return files


def read_bytes(path: Path) -> bytes:
    """The bytes of a dataset file; an unreadable one raises a one-line `SplitMergeError` naming it."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise SplitMergeError(f"{path}: cannot read ({error.strerror or error})") from None
