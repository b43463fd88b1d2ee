"""The Gradio page of `splitmerge app`: subject -> split -> background -> place -> method -> compose -> result.

Handlers only move values between the page and `app.jobs`; the work runs in a child process per job
(`JobRunner`), so a Cancel stops it and the page stays responsive. One job per browser session at a time.
No ``from __future__ import annotations`` here: Gradio reads the handlers' annotations (gr.Request,
gr.SelectData) to know what to pass them.
"""

import shutil

import cv2
import gradio as gr  # (imported by `serve` after it points Gradio's temporary folder into the working folder)

from ..errors import SplitMergeError
from ..demo import BACKGROUND
from ..samples import SAMPLES, sample_path
from ..video.io import read_video, write_video
from ..video.layers import Video
from .jobs import APP_METHODS, AppLimits, JobRunner, Workspace, check_video, compose_job, split_job

SAMPLE_STARTS = {BACKGROUND[0]: BACKGROUND[1]}  # first frame of the bundled samples' usable shot
METRIC_NAMES = {"fg_identity@appearance": "subject kept (appearance, 0-100)",
                "bg_identity@appearance": "background kept (appearance, 0-100)",
                "fg_motion@flow": "subject motion change (KL, lower is better)",
                "bg_motion@dis": "background motion change (px/frame, lower is better)",
                "text_alignment@minilm": "caption agreement (MiniLM, 0-100)"}


def _session(request) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def first_frame_with_marker(video, position=None):
    """The first frame of `video` (RGB) with a cross where `position` (x, y fractions) is."""
    if not video:
        return None
    frame = read_video(video, max_frames=1).frames[0].copy()
    if position is not None:
        height, width = frame.shape[:2]
        x, y = int(round(position[0] * (width - 1))), int(round(position[1] * (height - 1)))
        size = max(6, min(height, width) // 20)
        cv2.drawMarker(frame, (x, y), (255, 40, 40), cv2.MARKER_CROSS, size * 2, max(2, size // 3))
    return frame


def build_app(workspace: Workspace, limits: AppLimits, runner: JobRunner):
    """The page as a `gr.Blocks` (launch it with `serve`)."""

    def error(message: str):
        return gr.Error(message, print_exception=False)

    def copy_sample(name):
        """A bundled sample, copied into the working folder (the page only shows files from there); bikes from
        its street shot on (its first seconds are another shot)."""
        if not name:
            return gr.skip()
        target = workspace.root / "samples" / f"{name}.mp4"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            start = SAMPLE_STARTS.get(name, 0)
            if start:
                clip = read_video(sample_path(name), start=start)
                write_video(target, Video(clip.frames, clip.fps, dict(clip.meta)))
            else:
                shutil.copyfile(sample_path(name), target)
        return str(target)

    def first_frame_shower(role: str):
        """A handler showing a new `role` video's first frame, to click on (the click is forgotten)."""
        def show(video):
            try:
                return first_frame_with_marker(video), None
            except SplitMergeError as problem:
                raise error(f"{role} video: {' '.join(str(problem).split())}") from None

        return show

    def place_click(video, evt: gr.SelectData):
        """A click on a first frame: the marker drawn there and its (x, y) fractions (where the subject goes on
        the background, or which mover is the subject on the subject's video)."""
        if not video:
            return gr.skip(), None
        frame = first_frame_with_marker(video)
        height, width = frame.shape[:2]
        x, y = evt.index
        position = (min(max(x / max(width - 1, 1), 0.0), 1.0), min(max(y / max(height - 1, 1), 0.0), 1.0))
        return first_frame_with_marker(video, position), position

    def run(request, function, kwargs, progress, status_prefix):
        """Yield (status text, outcome or None) from a job, with the page's progress bar."""
        try:
            for kind, value, text in runner.run(_session(request), function, kwargs):
                if kind == "progress":
                    progress(value, desc=text)
                    yield f"{status_prefix}: {text}", None
                elif kind == "done":
                    yield f"{status_prefix}: done", value
                elif kind == "cancelled":
                    yield f"{status_prefix}: cancelled", None
                else:
                    raise error(f"{status_prefix} failed: {value}")
        except SplitMergeError as problem:
            raise error(" ".join(str(problem).split())) from None

    def checked(video, role: str) -> str:
        """The uploaded or chosen `video` of `role`, checked against the limits, or a message on the page."""
        if not video:
            raise error(f"choose a {role} video (upload one or pick a sample) first")
        try:
            check_video(video, limits, role)
        except SplitMergeError as problem:
            raise error(" ".join(str(problem).split())) from None
        return str(video)

    def do_split(video, point, request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio's injection)
        video = checked(video, "foreground")
        folder = workspace.job_folder(_session(request), "split")
        kwargs = {"video": video, "folder": str(folder), "limits": limits, "point": point}
        for status, outcome in run(request, split_job, kwargs, progress, "split"):
            if outcome is None:
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), status
            else:
                verdict = outcome["filters"]
                note = "" if verdict.get("passed") else f" (the paper's filters would drop it: {verdict.get('reason')})"
                yield outcome["overlay"], outcome["preview"], outcome["caption"], outcome["layers"], f"{status}{note}"

    def do_compose(layers, caption, background, position, scale, by_hand, hold, in_front, method,
                   request: gr.Request, progress=gr.Progress()):  # noqa: B008
        if not layers:
            raise error("split a foreground first (step 1)")
        background = checked(background, "background")
        folder = workspace.job_folder(_session(request), "compose")
        kwargs = {"layers": layers, "background": background, "folder": str(folder), "method": method,
                  "position": position, "scale": float(scale), "limits": limits, "prompt": caption or None,
                  "placement": "given" if by_hand else "model", "anchor": "auto" if hold else "screen",
                  "occlusion": "auto" if in_front else "off"}
        for status, outcome in run(request, compose_job, kwargs, progress, "compose"):
            if outcome is None:
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), status
            else:
                files = [outcome["result"]] + ([outcome["layers_zip"]] if outcome["layers_zip"] else [])
                rows = [[METRIC_NAMES.get(key, key), value] for key, value in outcome["metrics"].items()]
                held = " (held on the scene: the camera moves)" if outcome["anchor"]["mode"] == "world" else ""
                hidden = outcome["occlusion"]["frames_occluded"]
                front = f"; something passed in front in {hidden:.0%} of the frames" if hidden else ""
                yield (outcome["result"], outcome["side_by_side"], files, rows,
                       f"{status}: {outcome['frames']} frames with {method}{held}{front}")

    def do_cancel(request: gr.Request):
        return "cancelling..." if runner.cancel(_session(request)) else "nothing is running"

    def forget(request: gr.Request):
        runner.cancel(_session(request))
        workspace.forget(_session(request))

    with gr.Blocks(title="splitmerge", delete_cache=(900, 3600)) as page:
        gr.Markdown("# splitmerge\nPut a moving subject from one video into another: split the subject's video "
                    "into layers, choose a background, compose. Everything runs on this machine.")
        layers_state, position_state, pick_state = gr.State(None), gr.State(None), gr.State(None)
        samples = [""] + list(SAMPLES)
        with gr.Row():
            with gr.Column():
                gr.Markdown("### 1. Subject")
                fg_video = gr.Video(label="subject video", sources=["upload"], include_audio=True, format=None,
                                    elem_id="fg-video")
                fg_sample = gr.Dropdown(samples, value="", label="or a bundled sample", elem_id="fg-sample")
                fg_frame = gr.Image(label="optional: click on the subject (else the main moving thing)",
                                    interactive=False, type="numpy", elem_id="fg-frame")
                split_button = gr.Button("Split", variant="primary", elem_id="split-button")
                matte_video = gr.Video(label="split: the subject's matte over the video", interactive=False,
                                       elem_id="matte-video")
                with gr.Accordion("the layers: source | matte | subject | clean background | effects (its shadow)",
                                  open=False):
                    layers_video = gr.Video(show_label=False, interactive=False, elem_id="layers-video")
                caption = gr.Textbox(label="caption (the prompt: edit it to say what should happen)",
                                     elem_id="caption")
            with gr.Column():
                gr.Markdown("### 2. Background")
                bg_video = gr.Video(label="background video", sources=["upload"], include_audio=True, format=None,
                                    elem_id="bg-video")
                bg_sample = gr.Dropdown(samples, value="", label="or a bundled sample", elem_id="bg-sample")
                bg_frame = gr.Image(label="optional: click where the subject should go", interactive=False,
                                    type="numpy", elem_id="bg-frame")
                scale = gr.Slider(0.2, 2.0, value=1.0, step=0.05, label="subject size (1 = as in its own video)",
                                  elem_id="scale")
                by_hand = gr.Checkbox(False, label="keep it exactly there (else the model may move it)",
                                      elem_id="by-hand")
                hold = gr.Checkbox(True, label="hold it on its spot of the scene when the camera moves "
                                               "(else on its spot of the screen)", elem_id="hold")
                in_front = gr.Checkbox(True, label="let the background's movers nearer the camera pass in front "
                                                   "of it (outlined in the preview)", elem_id="in-front")
        gr.Markdown("### 3. Compose")
        method = gr.Radio(list(APP_METHODS), value="stm", label="method (stm: the bundled Composer)",
                          elem_id="method")
        with gr.Row():
            compose_button = gr.Button("Compose", variant="primary", elem_id="compose-button")
            cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
        status = gr.Markdown("", elem_id="status")
        with gr.Row():
            result_video = gr.Video(label="result", interactive=False, elem_id="result-video")
            side_video = gr.Video(label="subject | background | result", interactive=False, elem_id="side-video")
        with gr.Row():
            downloads = gr.File(label="downloads: result video, result layers (zip)", file_count="multiple",
                                interactive=False, elem_id="downloads")
            metrics = gr.Dataframe(headers=["metric (the paper's proxies)", "value"], interactive=False,
                                   elem_id="metrics")

        fg_sample.change(copy_sample, fg_sample, fg_video)
        bg_sample.change(copy_sample, bg_sample, bg_video)
        fg_video.change(first_frame_shower("subject"), fg_video, [fg_frame, pick_state])
        fg_frame.select(place_click, fg_video, [fg_frame, pick_state])
        bg_video.change(first_frame_shower("background"), bg_video, [bg_frame, position_state])
        bg_frame.select(place_click, bg_video, [bg_frame, position_state])
        split_button.click(do_split, [fg_video, pick_state], [matte_video, layers_video, caption, layers_state, status],
                           concurrency_limit=4)
        compose_button.click(do_compose, [layers_state, caption, bg_video, position_state, scale, by_hand, hold,
                                          in_front, method],
                             [result_video, side_video, downloads, metrics, status], concurrency_limit=4)
        cancel_button.click(do_cancel, None, status, concurrency_limit=None, queue=False)
        page.unload(forget)
    return page
