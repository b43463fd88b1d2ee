"""The `splitmerge` command: thin, one subcommand per stage; the work lives in the package.

Exit codes: 0 on success; 2 on bad input (a `SplitMergeError` or a bad option), with one line on stderr
naming the file or option and the problem.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import SplitMergeError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2, as argparse does)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _cmd_probe(args) -> int:
    from .video.io import probe

    print(json.dumps(probe(args.video).to_dict(), indent=2))
    return 0


def _cmd_samples(args) -> int:
    from .samples import list_samples

    rows = list_samples()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14}{'size':>10}{'frames':>8}{'fps':>8}{'seconds':>9}  path")
    for row in rows:
        size = f"{row['width']}x{row['height']}"
        print(f"{row['name']:<14}{size:>10}{row['frames']:>8}{row['fps']:>8.2f}{row['duration']:>9.2f}  {row['path']}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.output, frames=args.frames)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="splitmerge", description="Layer-aware video composition (Split-then-Merge).")
    parser.add_argument("--version", action="version", version=f"splitmerge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    probe = commands.add_parser("probe", help="describe a video file as JSON",
                                description="Print JSON: frames, fps, fps_rational, width, height (display "
                                            "orientation), duration (s), codec, pix_fmt, rotation, has_audio.")
    probe.add_argument("video", help="a video file")
    probe.set_defaults(run=_cmd_probe)

    samples = commands.add_parser("samples", help="list the real sample clips shipped by installed packages")
    samples.add_argument("--json", action="store_true", help="print JSON instead of a table")
    samples.set_defaults(run=_cmd_samples)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the bundled sample clips",
                               description="Probe the sample clips, composite one clip's subject region into "
                                           "another with a soft matte and a moving placement, and write the "
                                           "result, a Layers folder and preview pictures.")
    demo.add_argument("-o", "--output", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--frames", type=int, default=60, help="frames to compose (default: 60)")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except SplitMergeError as error:
        message = " ".join(str(error).split())
        print(f"splitmerge: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("splitmerge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
