"""The VLM judge: pairwise A / B / no-preference verdicts from any OpenAI-compatible vision-language endpoint.

As in the paper, a judge sees the reference foreground (the subject layer as given), the reference background,
and two results, and picks the better one on six criteria (foreground identity and motion, background identity
and motion, affordance, overall) and six affordance sub-criteria (physical interaction, scale, placement,
action-scene fit, lighting and shadow, occlusion and depth). Frames are sampled evenly from each video and sent
as JPEG images in a fixed order (reference foreground, reference background, video 1, video 2). Which method is
"video 1" is drawn per case and pair from the seed and recorded. Answers must be one JSON object; an answer that
does not parse is recorded as ``unparsed`` with its text, never guessed. The client's cache makes a rerun free.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib

import numpy as np

from ..vlm.frames import sample_frames
from ..vlm.http import ChatClient

CRITERIA = {
    "fg_identity": "the inserted subject keeps the appearance and identity of the reference foreground",
    "fg_motion": "the inserted subject moves like it does in the reference foreground, naturally",
    "bg_identity": "the background keeps the content of the reference background, nothing else changed",
    "bg_motion": "the background keeps the camera motion of the reference background",
    "affordance": "the subject belongs where it is in the scene",
    "overall": "the better composite overall",
}
AFFORDANCE = {
    "physical_interaction": "the subject touches and rests on the scene plausibly (feet on the ground, no floating)",
    "scale": "the subject's size fits its distance in the scene",
    "placement": "the subject is somewhere it could really be",
    "action_scene_fit": "what the subject does fits the scene",
    "lighting_shadow": "the subject's light, colour and shadow match the scene",
    "occlusion_depth": "the subject is in front of and behind the right things",
}
KEYS = tuple(CRITERIA) + tuple(AFFORDANCE)
ANSWERS = {"1": 0, "video 1": 0, "a": 0, "2": 1, "video 2": 1, "b": 1, "none": None, "no preference": None,
           "tie": None, "equal": None}


def judge_prompt(frames: int) -> str:
    lines = [f"You judge two video composites. The images come in four groups of {frames} frames each, in time "
             "order: (1) the reference foreground: the subject to insert, on black; (2) the reference background "
             "video; (3) video 1; (4) video 2. Videos 1 and 2 both try to insert the subject into the background.",
             "For each criterion, answer \"1\" if video 1 is better, \"2\" if video 2 is better, or \"none\" if "
             "neither is.", "Criteria:"]
    lines += [f"- {key}: {text}" for key, text in {**CRITERIA, **AFFORDANCE}.items()]
    lines.append("Reply with one JSON object and nothing else, mapping every criterion key to \"1\", \"2\" or "
                 "\"none\".")
    return "\n".join(lines)


def parse_answer(text: str) -> dict[str, int | None | str]:
    """{criterion: 0 (video 1), 1 (video 2), None (no preference), or "unparsed"} from a judge's reply."""
    found = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        record = json.loads(found.group(0)) if found else None
    except ValueError:
        record = None
    verdicts: dict[str, int | None | str] = {}
    for key in KEYS:
        value = record.get(key) if isinstance(record, dict) else None
        value = str(value).strip().lower() if value is not None else ""
        verdicts[key] = ANSWERS[value] if value in ANSWERS else "unparsed"
    return verdicts


def judge_pair(client: ChatClient, reference_fg: np.ndarray, reference_bg: np.ndarray, first: np.ndarray,
               second: np.ndarray, frames: int = 4, max_side: int = 384) -> tuple[str, dict]:
    """Ask the judge about one pair (all (T, H, W, 3) uint8); returns (raw reply, parsed verdicts)."""
    images = []
    for video in (reference_fg, reference_bg, first, second):
        images += sample_frames(video, frames, max_side)
    reply = client.ask(judge_prompt(frames), images, temperature=0, max_tokens=400)
    return reply, parse_answer(reply)


def run_judge(client: ChatClient, cases: list, videos: dict[str, dict[str, np.ndarray]], seed: int = 0,
              frames: int = 4) -> dict:
    """Judge every pair of methods on every case.

    Args:
        cases: `BenchCase`s.
        videos: method -> case id -> result frames (T, H, W, 3) uint8.
    Returns:
        {"verdicts": [one record per case and pair: case, pair, shown (the order the judge saw), reply,
        winners (criterion -> method, "none" or "unparsed")], "summary": {pair: {criterion: counts and win
        rate of the pair's first method over parsed answers, ties counting half}}, "criteria": ..., "model": ...}
    """
    methods = list(videos)
    records = []
    for case in cases:
        layer, background = case.foreground(), case.background().frames
        for index, (a, b) in enumerate(itertools.combinations(methods, 2)):
            rng = np.random.default_rng([seed, zlib.crc32(case.id.encode()), index])
            shown = (b, a) if rng.random() < 0.5 else (a, b)
            reply, verdicts = judge_pair(client, layer.foreground, background, videos[shown[0]][case.id],
                                         videos[shown[1]][case.id], frames)
            winners = {key: ("unparsed" if value == "unparsed" else "none" if value is None else shown[value])
                       for key, value in verdicts.items()}
            records.append({"case": case.id, "pair": [a, b], "shown": list(shown), "reply": reply,
                            "winners": winners})
    summary = {}
    for a, b in itertools.combinations(methods, 2):
        mine = [r for r in records if r["pair"] == [a, b]]
        table = {}
        for key in KEYS:
            votes = [r["winners"][key] for r in mine]
            wins, losses, ties = votes.count(a), votes.count(b), votes.count("none")
            parsed = wins + losses + ties
            table[key] = {f"{a}": wins, f"{b}": losses, "none": ties, "unparsed": votes.count("unparsed"),
                          "win_rate": (wins + 0.5 * ties) / parsed if parsed else None}
        summary[f"{a} vs {b}"] = table
    return {"model": client.model, "endpoint": client.public_endpoint, "frames": frames, "seed": seed,
            "criteria": {**CRITERIA, **AFFORDANCE}, "verdicts": records, "summary": summary}
