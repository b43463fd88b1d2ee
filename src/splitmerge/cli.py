"""The `splitmerge` command: thin, one subcommand per stage; the work lives in the package.

Exit codes: 0 on success; 2 on bad input (a `SplitMergeError` or a bad option), with one line on stderr
naming the file or option and the problem.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import OptionError, SplitMergeError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2, as argparse does), and an epilog can be
    computed only when help is shown (`epilog_factory`), so listing backends costs nothing otherwise."""

    def __init__(self, *args, epilog_factory=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()

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


def _cmd_split(args) -> int:
    from .decompose.pipeline import split_to_folder

    options: dict[str, dict] = {}

    def option(backend: str | None, key: str, value) -> None:
        if backend and value is not None:
            options.setdefault(backend, {})[key] = value

    option(args.refiner, "model_path", args.refiner_model)
    option(args.restorer, "model_path", args.restorer_model)
    option(args.captioner, "model_path", args.caption_model)
    for key, value in (("url", args.vlm_url), ("model", args.vlm_model), ("api_key", args.vlm_key)):
        option(args.captioner, key, value)
    used = {args.backend, args.refiner, args.restorer, args.captioner} - {None}
    for setting in args.set:
        backend, key, value = _parse_setting(setting)
        if backend not in used:
            raise OptionError(f"--set {setting!r}: backend {backend!r} is not used by this split "
                              f"(using {', '.join(sorted(used))})")
        option(backend, key, value)
    meta = split_to_folder(args.video, args.output, segmenter=args.backend, refiner=args.refiner,
                           restorer=args.restorer, captioner=args.captioner, caption=args.caption,
                           all_objects=args.all_objects, size=args.size, frames=args.frames, start=args.start,
                           stride=args.stride, window=args.window, backend_options=options)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    verdict = meta["filters"]
    status = "passed" if verdict["passed"] else f"would be skipped for training: {verdict['reason']}"
    print(f"wrote {meta['path']}: {meta['num_frames']} frames, foreground ratio {verdict['fg_ratio']:.3f}, "
          f"subject in {verdict['presence']:.0%} of frames; filters {status}")
    print(f"caption: {meta['caption']}")
    print("seconds: " + ", ".join(f"{stage} {value:.2f}" for stage, value in meta["seconds"].items() if value))
    return 0


def _parse_setting(text: str) -> tuple[str, str, object]:
    """"NAME.KEY=VALUE" -> (NAME, KEY, VALUE); VALUE is read as JSON when it parses (numbers, true, lists),
    else kept as text."""
    target, equals, raw = text.partition("=")
    backend, dot, key = target.partition(".")
    if not (equals and dot and backend and key.isidentifier()):
        raise OptionError(f"--set {text!r}: expected BACKEND.KEY=VALUE, e.g. sam2.key_every=8")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return backend, key, value


def _backends_epilog() -> str:
    from .decompose.backends import describe_backends

    lines = ["backends (kind name: availability):"]
    for row in describe_backends():
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        lines.append(f"  {row['kind']:<10} {row['name']:<13} {state}")
    return "\n".join(lines)


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

    split = commands.add_parser(
        "split", help="split a video into layers: subject + matte, clean background, caption",
        description="Split VIDEO into a Layers folder (source, foreground, alpha, background, preview, "
                    "layers.json). Long videos are processed in windows and streamed to disk.",
        epilog_factory=_backends_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    split.add_argument("video", help="a video file")
    split.add_argument("-o", "--output", required=True, help="the Layers folder to write")
    split.add_argument("--backend", default="motion", help="segmenter (default: motion)")
    split.add_argument("--refiner", default=None, help="optional mask refiner, e.g. sam2")
    split.add_argument("--restorer", default="propagate", help="background restorer (default: propagate)")
    split.add_argument("--captioner", default="measured", help="captioner (default: measured)")
    split.add_argument("--size", default=None, help="working size HxW (centre crop, then resize); default: the "
                                                     "video's own, at most 480 px high")
    split.add_argument("--frames", type=int, default=None, help="split at most N frames")
    split.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    split.add_argument("--stride", type=int, default=1, help="keep every K-th frame (default 1)")
    split.add_argument("--caption", default=None, help="use this caption instead of a captioner")
    split.add_argument("--all-objects", action="store_true", help="keep every moving object, not only the main one")
    split.add_argument("--window", type=int, default=64, help="frames per processing window (default 64)")
    split.add_argument("--refiner-model", default=None, help="local weights folder of the refiner")
    split.add_argument("--restorer-model", default=None, help="local weights folder of a model restorer")
    split.add_argument("--caption-model", default=None, help="local weights folder of the transformers captioner")
    split.add_argument("--vlm-url", default=None, help="OpenAI-compatible endpoint for --captioner http "
                                                       "(or SPLITMERGE_VLM_URL)")
    split.add_argument("--vlm-model", default=None, help="model name at that endpoint (or SPLITMERGE_VLM_MODEL)")
    split.add_argument("--vlm-key", default=None, help="API key (or SPLITMERGE_VLM_API_KEY)")
    split.add_argument("--set", action="append", default=[], metavar="BACKEND.KEY=VALUE",
                       help="an option of a backend's constructor, e.g. propagate.dilation=8 or wan-vace.steps=20 "
                            "(repeatable; VALUE is JSON when it parses)")
    split.add_argument("--json", action="store_true", help="print the clip's metadata as JSON")
    split.set_defaults(run=_cmd_split)

    samples = commands.add_parser("samples", help="list the real sample clips shipped by installed packages")
    samples.add_argument("--json", action="store_true", help="print JSON instead of a table")
    samples.set_defaults(run=_cmd_samples)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the bundled sample clips",
                               description="Probe the sample clips, split one into layers, paste its subject "
                                           "into another, and write the Layers folder, the composite and "
                                           "preview pictures.")
    demo.add_argument("-o", "--output", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--frames", type=int, default=49, help="frames to split and compose (default: 49)")
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
