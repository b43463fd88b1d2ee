"""`splitmerge app`: a local web page (Gradio) for splitting and composing, on 127.0.0.1 unless told otherwise.

`serve` sets the web server's temporary folder (uploads and its file cache) inside the working folder before
Gradio is imported, so nothing is written outside it; at exit it stops running jobs and removes the sessions'
files (and the working folder itself when it made it).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from .jobs import AppLimits, JobRunner, Workspace


def serve(host: str = "127.0.0.1", port: int = 7860, workdir: str | os.PathLike | None = None,
          limits: AppLimits | None = None, ready=None) -> None:
    """Serve the app until interrupted (SIGINT/SIGTERM). `ready(url)` is called once it listens."""
    made = workdir is None
    root = Path(tempfile.mkdtemp(prefix="splitmerge-app-")) if made else Path(workdir)
    workspace = Workspace(root)
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.uploads)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("MPLCONFIGDIR", str(workspace.root / "matplotlib"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gradio as gr

    from .ui import build_app

    limits = limits or AppLimits()
    runner = JobRunner()
    page = build_app(workspace, limits, runner)
    # System fonts: the default theme would ask Google's font servers, which an offline machine cannot reach.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        _, url, _ = page.queue(default_concurrency_limit=4).launch(
            server_name=host, server_port=port, max_file_size=f"{limits.max_upload_mb:g}mb",
            allowed_paths=[str(workspace.root)], prevent_thread_lock=True, quiet=True, theme=theme,
            footer_links=["gradio"], ssr_mode=False)
        print(f"splitmerge app: {url} (working folder {workspace.root}; Ctrl-C stops)", flush=True)
        if ready is not None:
            ready(url)
        stop.wait()
    finally:
        runner.stop_all()
        page.close()
        workspace.close()
        if made:
            shutil.rmtree(root, ignore_errors=True)
