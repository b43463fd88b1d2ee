"""`splitmerge dataset preview`: an HTML page with a grid of looping clip previews, to look at a dataset."""

from __future__ import annotations

import html
import os
import urllib.parse
from pathlib import Path

from ..atomic import atomic_file
from ..paths import check_output
from .manifest import DATASET_ENTRIES, clip_folder, read_manifest
from .report import summarize

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; background: #f4f4f4; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.summary {{ margin: 0 0 12px; color: #555; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({width}px, 1fr)); gap: 12px; }}
figure {{ margin: 0; background: #fff; border-radius: 6px; padding: 6px; box-shadow: 0 1px 3px #0002; }}
video {{ width: 100%; display: block; border-radius: 4px; background: #000; }}
figcaption {{ font-size: 12px; margin-top: 4px; line-height: 1.35; }}
.meta {{ color: #777; font-family: ui-monospace, monospace; font-size: 11px; }}
.skipped, .failed {{ opacity: 0.8; }}
.badge {{ display: inline-block; padding: 0 5px; border-radius: 3px; font-size: 11px; color: #fff; }}
.ok .badge {{ background: #2e8b57; }} .skipped .badge {{ background: #b8860b; }}
.failed .badge {{ background: #b22222; }}
ul {{ margin: 6px 0 14px; padding-left: 20px; color: #555; }}
</style></head><body>
<h1>{title}</h1>
<p class="summary">{summary}</p>
<div class="grid">
{cards}
</div>
{others}
</body></html>
"""

CARD = """<figure class="{status}">
<video src="{src}" autoplay loop muted playsinline preload="auto"></video>
<figcaption><span class="badge">{status}</span> {caption}<br>
<span class="meta">{id} &middot; {split} &middot; fg {fg:.3f} &middot; {source}</span></figcaption>
</figure>"""


def write_preview(dataset: str | Path, output: str | Path | None = None, limit: int = 200) -> Path:
    """Write the page (default ``DATASET/preview.html``): each ok clip's side-by-side preview looping (source |
    matte | foreground | background), with its caption, split, foreground ratio and source; then the clips that
    were skipped or failed, with their reasons. Video links are relative, so the page moves with the dataset.
    Every text from the manifest is HTML-escaped; the page is written atomically and never over the dataset's own
    files (`paths.check_output`)."""
    dataset = Path(dataset)
    out = check_output(Path(output) if output else dataset / "preview.html",
                       [dataset / name for name in DATASET_ENTRIES], kind="file", suffixes=(".html", ".htm"))
    rows = read_manifest(dataset, plain_ids=False)  # ids are only shown here (escaped), never made names
    stats = summarize(rows)
    cards = [_card(dataset, row, out) for row in [row for row in rows if row["status"] == "ok"][:limit]]
    others = [_other(row) for row in rows if row["status"] != "ok"]
    counts = ", ".join(f"{count} {status}" for status, count in sorted(stats["status"].items()))
    summary = (f"{counts}; {stats['frames']} frames of ok clips; panels: source | matte | foreground | "
               f"background")
    page = PAGE.format(title=_text(f"Dataset {dataset.resolve().name}"), summary=_text(summary),
                       width=360, cards="\n".join(cards),
                       others=f"<h2>Not kept</h2><ul>{''.join(others)}</ul>" if others else "")
    with atomic_file(out) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return out


def _text(value: object) -> str:
    """Any value from data as HTML text or attribute value: every ``& < > " '`` escaped."""
    return html.escape(str(value), quote=True)


def _card(dataset: Path, row: dict, out: Path) -> str:
    """The figure of one ok clip: its looping preview and its caption, id, split, foreground ratio and source."""
    video = clip_folder(dataset, row) / "preview.mp4"
    source = Path(row["source_path"]).name if row["source_path"] else f"synthetic seed {row['seed']}"
    if row["kind"] == "video":
        source += f" @ {row['start_frame']}" + (f" /{row['stride']}" if row["stride"] > 1 else "")
    src = urllib.parse.quote(Path(os.path.relpath(video, out.parent)).as_posix())
    return CARD.format(status=_text(row["status"]), src=_text(src), caption=_text(row["caption"]),
                       id=_text(row["id"]), split=_text(row["split"]), fg=row["fg_ratio"], source=_text(source))


def _other(row: dict) -> str:
    """The list item of a clip not kept: its status, id, source file and reason."""
    source = Path(row["source_path"]).name or "synthetic"
    return (f"<li><b>{_text(row['status'])}</b> {_text(row['id'])} ({_text(source)}): "
            f"{_text(row['reason'])}</li>")
