"""`splitmerge app`: a local web page (Gradio) for splitting and composing, on 127.0.0.1 unless told otherwise.

`serve` sets the web server's temporary folder (uploads and its file cache) inside the working folder before
Gradio is imported, so nothing is written outside it; at exit it stops running jobs and removes the sessions'
files (and the working folder itself when it made it).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import OptionError
from ..paths import check_output
from .jobs import AppLimits, JobRunner, Workspace


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    except (OSError, ValueError):
        return False


def check_address(host: str, port: int) -> None:
    """A one-line error when `host` is not an address of this machine or `port` cannot be listened on."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise OptionError(f"--port {port!r}: expected 1 to 65535")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as error:
        raise OptionError(f"--host {host!r}: not an address ({getattr(error, 'strerror', None) or error})") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise OptionError(f"--host {host} --port {port}: cannot listen there ({error.strerror})") from None


def serve(host: str = "127.0.0.1", port: int = 7860, workdir: str | os.PathLike | None = None,
          limits: AppLimits | None = None, ready=None) -> None:
    """Serve the app until interrupted (SIGINT/SIGTERM). `ready(url)` is called once it listens."""
    check_address(host, port)
    if workdir is not None:
        check_output(workdir, kind="folder", flag="--workdir")
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
        if not is_loopback(host):
            print(f"splitmerge app: warning: listening on {host}:{port}, reachable from other machines on the "
                  f"network; anyone who can reach it can upload videos and run jobs (no login)", file=sys.stderr,
                  flush=True)
        if ready is not None:
            ready(url)
        stop.wait()
    finally:
        runner.stop_all()
        page.close()
        workspace.close()
        if made:
            shutil.rmtree(root, ignore_errors=True)
