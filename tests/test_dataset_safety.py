"""Hostile Dataset folders: a manifest.parquet edited by anyone (paths leading out, ids that are not names,
HTML in texts, wrong or missing columns), clip folders with files missing, symlinked out or malformed.

Every `splitmerge dataset` command either refuses with exit code 2 and one ``splitmerge: error:`` line on stderr,
writing nothing and leaving its inputs byte-identical, or (a harmless defect for it) succeeds writing only its
output; the preview page shows any text from data escaped.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from splitmerge.cli import main
from splitmerge.data.report import write_readme
from splitmerge.errors import LayersFormatError, SplitMergeError

PAYLOAD = "<img src=x onerror=alert(1)>"
COMMANDS = ("verify", "stats", "preview", "webdataset", "lists")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A tiny dataset: 2 synthetic ok clips of 8 frames at 32x48 (built once per module, never changed)."""
    folder = tmp_path_factory.mktemp("built") / "D"
    assert main(["build", "--synthetic", "2", "--frames", "8", "--size", "32x48", "-o", str(folder)]) == 0
    return folder


@pytest.fixture
def work(built, tmp_path) -> Path:
    """A fresh copy of the dataset at ``work/D`` and, beside it, ``work/outside``: a sound Layers folder that is
    not part of the dataset (what hostile paths point at)."""
    shutil.copytree(built, tmp_path / "D", symlinks=True)
    shutil.copytree(first_clip(built), tmp_path / "outside")
    return tmp_path


def first_clip(dataset: Path) -> Path:
    return sorted((dataset / "clips").iterdir())[0]


# --------------------------------------------------------------------------------------------- tampering


def edit_rows(dataset: Path, change) -> None:
    """Rewrite manifest.parquet after `change(rows)` edits its rows (dicts, in file order) in place."""
    path = dataset / "manifest.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def edit_table(dataset: Path, change) -> None:
    """Rewrite manifest.parquet as `change(table)`."""
    path = dataset / "manifest.parquet"
    pq.write_table(change(pq.read_table(path)), path)


def set_first(**values):
    return lambda dataset, outside: edit_rows(dataset, lambda rows: rows[0].update(values))


def replace_column(name: str, values: list):
    def change(table):
        index = table.column_names.index(name)
        return table.set_column(index, name, pa.array(values))
    return lambda dataset, outside: edit_table(dataset, change)


def symlink_clip(dataset: Path, outside: Path) -> None:
    clip = first_clip(dataset)
    shutil.rmtree(clip)
    os.symlink(outside, clip)


def symlink_loop(dataset: Path, outside: Path) -> None:
    clip = first_clip(dataset)
    shutil.rmtree(clip)
    os.symlink(clip.name, clip)


def symlink_file(dataset: Path, outside: Path) -> None:
    target = first_clip(dataset) / "source.mp4"
    target.unlink()
    os.symlink(outside / "source.mp4", target)


def duplicate_id(dataset: Path, outside: Path) -> None:
    edit_rows(dataset, lambda rows: rows[1].update(id=rows[0]["id"]))


def empty_manifest(dataset: Path, outside: Path) -> None:
    edit_table(dataset, lambda table: table.slice(0, 0))


ALL = set(COMMANDS)
READS_FILES = {"verify", "stats", "webdataset", "lists"}  # the preview only links the clips' preview.mp4
NAMES_IDS = ALL - {"preview"}  # the preview only shows ids (escaped): it never makes a file name of one
# name: (tamper(dataset, outside), words expected in the output, the commands that must refuse)
CASES = {
    "clip ../outside": (set_first(clip="../outside"), "row 1: clip '../outside': leads outside", ALL),
    "clip absolute": (lambda d, o: edit_rows(d, lambda rows: rows[0].update(clip=str(o))), "an absolute path",
                      ALL),
    "clip symlinked out": (symlink_clip, "row 1: clip", ALL),
    "clip file symlinked out": (symlink_file, "source.mp4", READS_FILES),
    "clip symlink loop": (symlink_loop, "row 1: clip", ALL),
    "id ../../evil": (set_first(id="../../evil"), "row 1: id '../../evil': not a plain name", NAMES_IDS),
    "id with a slash": (set_first(id="a/b"), "row 1: id 'a/b'", NAMES_IDS),
    "id with html": (set_first(id=PAYLOAD), "row 1: id", NAMES_IDS),
    "id twice": (duplicate_id, "id", ALL),
    "unknown status": (set_first(status="great"), "row 1: status 'great'", ALL),
    "nan fg_ratio": (set_first(fg_ratio=float("nan")), "row 1: fg_ratio nan", ALL),
    "zero frames": (set_first(num_frames=0), "row 1: num_frames 0", ALL),
    "missing clip file": (lambda d, o: (first_clip(d) / "source.mp4").unlink(), "source.mp4: missing", READS_FILES),
    "not parquet": (lambda d, o: (d / "manifest.parquet").write_text("id,clip\nx,../y\n"), "unreadable", ALL),
    "missing column": (lambda d, o: edit_table(d, lambda t: t.drop_columns(["clip"])), "missing columns clip",
                       ALL),
    "text frame counts": (replace_column("num_frames", ["eight", "eight"]), "column num_frames holds string", ALL),
    "fractional frame counts": (replace_column("num_frames", [8.5, 8.0]), "column num_frames", ALL),
    "null caption": (replace_column("caption", [None, "a caption"]), "row 1: caption is empty (null)", ALL),
    "empty manifest": (empty_manifest, "", {"verify", "webdataset", "lists"}),
    "layers.json malformed": (lambda d, o: (first_clip(d) / "layers.json").write_text("{oops"), "layers.json",
                              {"verify", "stats"}),
}


# --------------------------------------------------------------------------------------------- checking


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (symlinks not followed): its kind and content hash or link target."""
    state = {}
    for folder, names, files in os.walk(root):
        for name in names + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = "link " + os.readlink(path)
            elif path.is_dir():
                state[key] = "folder"
            else:
                state[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return state


def arguments(command: str, dataset: Path, out: Path) -> list[str]:
    return {"verify": ["dataset", "verify", str(dataset)],
            "stats": ["dataset", "stats", str(dataset), "-o", str(out)],
            "preview": ["dataset", "preview", str(dataset), "-o", str(out)],
            "webdataset": ["dataset", "export", str(dataset), "--split", "all", "-o", str(out)],
            "lists": ["dataset", "export", str(dataset), "--split", "all", "--format", "cogvideox-lists",
                      "-o", str(out)]}[command]


def output_of(command: str, work: Path) -> Path:
    return work / ("page.html" if command == "preview" else "out")


def assert_refused(argv: list[str], work: Path, capsys, words: str = "") -> str:
    """`argv` exits 2 with one error line on stderr, writing nothing anywhere under `work`; returns stdout+stderr."""
    capsys.readouterr()
    before = snapshot(work)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitmerge: error:"), err
    assert words in out + err, (words, out, err)
    assert snapshot(work) == before
    assert not [path for path in work.rglob("*") if "partial" in path.name]
    return out + err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_dataset(work, capsys, case, command):
    tamper, words, refusing = CASES[case]
    dataset, output = work / "D", output_of(command, work)
    tamper(dataset, work / "outside")
    argv = arguments(command, dataset, output)
    if command in refusing:
        assert_refused(argv, work, capsys, words)
        assert not output.exists()
        return
    before = snapshot(work)
    assert main(argv) == 0
    after = snapshot(work)
    written = {key for key in after if key == output.name or key.startswith(output.name + os.sep)}
    assert written and {key: after[key] for key in after.keys() - written} == before


@pytest.mark.parametrize("case", [name for name, (_, words, refusing) in CASES.items()
                                  if "webdataset" in refusing and words])  # what the export refuses
def test_the_torch_dataset_refuses_on_construction(work, case):
    from splitmerge.data import StmDataset

    tamper, words, _ = CASES[case]
    tamper(work / "D", work / "outside")
    with pytest.raises(SplitMergeError) as caught:
        StmDataset(work / "D", split=None)
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("field", ["id", "split", "caption", "reason", "source_path", "status"])
def test_text_from_the_manifest_lands_escaped_in_the_preview(work, capsys, field):
    dataset = work / "D"
    if field == "status":  # a status is checked, so it can never carry HTML
        edit_rows(dataset, lambda rows: rows[0].update(status=PAYLOAD))
        assert_refused(arguments("preview", dataset, work / "page.html"), work, capsys, "status")
        return
    values = {field: PAYLOAD}
    if field == "reason":
        values.update(status="failed", clip="")
    if field == "source_path":
        values.update(kind="video", source_path=f"/videos/{PAYLOAD}.mp4")
    edit_rows(dataset, lambda rows: rows[0].update(values))
    assert main(arguments("preview", dataset, work / "page.html")) == 0
    page = (work / "page.html").read_text()
    assert PAYLOAD not in page and "<img" not in page and html.escape(PAYLOAD) in page


def test_the_readme_escapes_text_from_data(tmp_path):
    rows = [{"status": "ok", "split": PAYLOAD, "kind": "synthetic", "fg_ratio": 0.1, "caption": "a b",
             "seconds_total": 1.0, "source_sha1": "", "source_path": "", "num_frames": 8},
            {"status": "failed", "split": "train", "kind": "video", "fg_ratio": float("nan"), "caption": "",
             "seconds_total": 1.0, "source_sha1": "", "source_path": "x.mp4", "num_frames": 0,
             "reason": f"bad | {PAYLOAD} [link](javascript:alert(1))\nsecond line"}]
    text = write_readme(tmp_path, rows, {"note": "``` breaks out"}).read_text()
    assert "<img" not in text and "[link](" not in text
    table_rows = [line for line in text.splitlines() if line.startswith("| failed:")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 1  # one line, the pipe inside escaped
    assert "````json" in text  # the fence is longer than the backticks inside the settings


OUTPUTS = {
    "stats into the dataset": ("stats", "D"),
    "stats into its clips": ("stats", "D/clips/new"),
    "preview over the manifest": ("preview", "D/manifest.parquet"),
    "preview into rows": ("preview", "D/rows/page.html"),
    "preview into a clip": ("preview", "D/clips/page.html"),
    "export into the dataset": ("webdataset", "D"),
    "export inside the dataset": ("lists", "D/exports"),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_outputs_never_land_on_the_dataset(work, capsys, case):
    command, relative = OUTPUTS[case]
    assert_refused(arguments(command, work / "D", work / relative), work, capsys, "-o")


@pytest.mark.parametrize("command", ["stats", "webdataset", "lists"])
def test_a_folder_holding_other_files_is_not_replaced(work, capsys, command):
    (work / "out").mkdir()
    (work / "out" / "thesis.tex").write_text("precious")
    assert_refused(arguments(command, work / "D", work / "out"), work, capsys, "'thesis.tex'")


@pytest.mark.parametrize("command", ["stats", "webdataset", "lists"])
def test_a_previous_output_is_replaced_whole(work, command):
    argv = arguments(command, work / "D", work / "out")
    (work / "out").mkdir()
    stale = "stats.json" if command == "stats" else "shard-000009.tar"  # a file the command writes, left over
    (work / "out" / stale).write_bytes(b"stale")
    assert main(argv) == 0
    first = snapshot(work / "out")
    assert first.get(stale) != hashlib.sha1(b"stale").hexdigest()  # gone (a shard) or rewritten (stats.json)
    assert main(argv) == 0
    assert snapshot(work / "out") == first  # the same run twice: the same folder


def test_a_failed_export_keeps_the_previous_one(work, capsys):
    argv = arguments("webdataset", work / "D", work / "out")
    assert main(argv) == 0
    (first_clip(work / "D") / "background.mp4").unlink()
    assert "background.mp4: missing" in assert_refused(argv, work, capsys)
    assert sorted(path.name for path in (work / "out").iterdir()) == ["shard-000000.tar"]


def test_a_sound_dataset_passes_and_a_default_stats_and_preview_stay_beside_it(work, capsys):
    dataset = work / "D"
    assert main(["dataset", "verify", str(dataset)]) == 0
    assert main(["dataset", "stats", str(dataset)]) == 0 and (dataset / "stats" / "stats.json").is_file()
    assert main(["dataset", "preview", str(dataset)]) == 0 and (dataset / "preview.html").is_file()
    assert main(["dataset", "verify", str(dataset)]) == 0
    assert "sound" in capsys.readouterr().out


def test_a_damaged_shard_is_named(tmp_path):
    from splitmerge.data import StmIterableDataset

    shard = tmp_path / "shard-000000.tar"
    shard.write_text("not a tar")
    with pytest.raises(LayersFormatError, match="not a readable tar shard"):
        list(StmIterableDataset([shard]))


def test_rows_json_that_is_not_a_row_is_named(work, capsys):
    (work / "D" / "rows" / "zzz.json").write_text(json.dumps(["not", "a", "row"]))
    assert "not a manifest row" in assert_refused(["dataset", "verify", str(work / "D")], work, capsys)


@pytest.mark.parametrize("key", ["a.b", "x" * 90])
def test_an_id_that_cannot_be_a_webdataset_key_is_refused_before_writing(work, capsys, key):
    edit_rows(work / "D", lambda rows: rows[0].update(id=key))
    assert_refused(arguments("webdataset", work / "D", work / "out"), work, capsys, repr(key))
    assert not (work / "out").exists()
