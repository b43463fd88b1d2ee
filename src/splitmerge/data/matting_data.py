"""Training examples for the learned matting stage (`decompose.matting_net`): what the Split pipeline really gives
it, with the exact answer beside.

Each example comes from a ground-truth clip rendered like the split benchmark's (`eval.split_truth`: a world
under a virtual camera, a cut-out walking a path, optionally non-rigid, stopping, casting a soft shadow, blurred,
with other movers behind) but from *training material only*: procedural subjects (`data.cutouts.procedural_cutout`,
textured by photos the benchmark never uses) and, in `REAL_SUBJECTS` of the clips, real subjects cut from frames
of the bigbuckbunny and carphone clips (`data.cutouts.CLIP_CUTOUTS`: the rabbit, the man in the car), over
`TRAIN_WORLDS` (other photos, and frames of the bigbuckbunny and carphone clips, still or moving, half of the
clips; never the benchmark's rocket, coffee, motorcycle or bikes). The clip is split by the default pipeline with
the shadow left in the matte (``effects=False``), so each frame gives the network's inputs as they will be at
run time, and the truth gives its targets:

    inputs:  frame (H, W, 3) uint8, plate (H, W, 3) uint8 (the scene without the subject in the frame's view,
             everywhere: `PropagateRestorer.restore_with_scene`), coarse (H, W) uint8 (the segmenter's matte x 255)
    targets: alpha (H, W) uint8 (the true matte x 255), gain (H, W) uint8 (the true shadow gain x 255, 255 = none)

A shard is one clip's examples in one ``.npz`` (every `FRAME_STEP`-th frame), written atomically; `generate`
makes shards ``0000.npz``, ``0001.npz``, ... resumably (existing shards are kept).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..errors import OptionError

PHOTO_WORLDS = ("photo:hubble_deep_field", "photo:immunohistochemistry", "photo:retina", "photo:colorwheel",
                "photo:camera", "photo:grass", "photo:gravel", "photo:brick", "photo:moon", "photo:coins",
                "photo:clock")
# Natural scenes (sky, grass, trees, a car's inside) weigh as much as all the photos together: a world of only
# textured photos teaches a network that whatever is smooth is the subject.
CLIP_WORLDS = tuple(f"clip:bigbuckbunny@{frame}" for frame in range(0, 132, 12)) + tuple(
    f"clip:carphone@{frame}" for frame in range(0, 120, 30)) + (
    "video:bigbuckbunny@20", "video:bigbuckbunny@80", "video:carphone@0", "video:carphone@50")
TRAIN_WORLDS = PHOTO_WORLDS + CLIP_WORLDS
BENCHMARK_MATERIAL = ("rocket", "coffee", "stereo_motorcycle", "bikes", "astronaut", "chelsea", "cat", "cup")
REAL_SUBJECTS = 0.4   # share of clips whose subject is a real one cut from a sample clip (`cutouts.CLIP_CUTOUTS`)
FRAMES = 24           # frames per training clip
FRAME_STEP = 2        # every second frame becomes an example (neighbours are nearly the same)
SIZE = (240, 360)     # the benchmark's working size: the network sees its features at the scale it will meet
ARRAYS = ("frame", "plate", "coarse", "alpha", "gain")


def training_case(index: int, seed: int = 0, real_subjects: float = REAL_SUBJECTS):
    """The `index`-th training clip's recipe (`eval.split_truth.TruthCase`), random but fixed by (index, seed);
    its subject is a real one (`cutouts.CLIP_CUTOUTS`) with probability `real_subjects`, drawn from a stream of
    its own, so the rest of the recipe does not depend on it."""
    from ..eval.split_truth import CAMERAS, TruthCase
    from .cutouts import CLIP_CUTOUTS

    rng = np.random.default_rng([seed, index, 17])
    subjects = np.random.default_rng([seed, index, 29])
    real = subjects.random() < real_subjects
    shadowed = rng.random() < 0.6
    return TruthCase(
        name=f"train-{seed}-{index}",
        background=str(rng.choice(CLIP_WORLDS if rng.random() < 0.5 else PHOTO_WORLDS)),
        subject=str(subjects.choice(list(CLIP_CUTOUTS))) if real else f"shape:{seed * 100003 + index}",
        camera=str(rng.choice(CAMERAS)),
        path=str(rng.choice(["walk", "fast", "slow", "pause", "stop"], p=[0.35, 0.2, 0.15, 0.15, 0.15])),
        frames=FRAMES, size=SIZE, subject_height=float(rng.uniform(0.35, 0.65)),
        flatten=float(rng.choice([0.0, 0.0, 3.0, 8.0])), seed=int(rng.integers(0, 2**31)),
        warp=float(rng.choice([0.0, rng.uniform(0.04, 0.12)])),
        shadow=float(rng.uniform(0.25, 0.55)) if shadowed else 0.0,
        movers=(f"shape:{seed * 100003 + index + 50000}",) if rng.random() < 0.3 else (),
        motion_blur=float(rng.choice([0.0, 0.0, 1.0])), soft_edge=float(rng.choice([0.0, 0.5, 1.0, 1.5])))


def _check_disjoint(case) -> None:
    """Refuse a training recipe that uses the split benchmark's material (a model must not see the test)."""
    used = f"{case.background} {case.subject} {' '.join(case.movers)}"
    for name in BENCHMARK_MATERIAL:
        if name in used.replace("shape:", "#"):
            raise OptionError(f"training case {case.name!r} uses the benchmark's {name!r}")


def examples_from_case(case) -> dict[str, np.ndarray] | None:
    """Render `case`, split it with the default pipeline (shadow left in the matte) and return its examples as
    `ARRAYS` -> (N, H, W[, 3]) uint8, or None when the split found no subject."""
    import splitmerge as sm

    from ..decompose.backends import SplitClip
    from ..decompose.pipeline import NoSubjectError, split
    from ..decompose.restore import PropagateRestorer
    from ..eval.split_truth import render_case

    _check_disjoint(case)
    truth = render_case(case)
    try:
        layers = split(sm.Video(truth.frames, truth.fps), caption="training", effects=False)
    except NoSubjectError:
        return None
    keep = slice(0, len(truth.frames), FRAME_STEP)
    _, scene = PropagateRestorer().restore_with_scene(SplitClip(truth.frames, truth.fps), layers.alpha)

    def to_byte(values: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)

    return {"frame": truth.frames[keep], "plate": scene[keep], "coarse": to_byte(layers.alpha[keep]),
            "alpha": to_byte(truth.alpha[keep]), "gain": to_byte(truth.effects[keep])}


def generate(out: str | Path, count: int, seed: int = 0, real_subjects: float = REAL_SUBJECTS, log=print
             ) -> list[Path]:
    """Write `count` shards into `out` (resumable: shards already there are kept); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths, started = [], time.perf_counter()
    for index in range(count):
        path = out / f"{index:04d}.npz"
        paths.append(path)
        if path.exists():
            continue
        examples = examples_from_case(training_case(index, seed, real_subjects))
        if examples is None:
            examples = {name: np.zeros((0, 1, 1), np.uint8) for name in ARRAYS}  # an empty shard: done, nothing
        with atomic_file(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, **examples)
        if log and (index + 1) % 10 == 0:
            log(f"  {index + 1}/{count} training clips, {time.perf_counter() - started:.0f} s")
    return paths


def load_shards(paths) -> dict[str, np.ndarray]:
    """Concatenate shards (`generate`'s files) into `ARRAYS` -> (N, H, W[, 3]) uint8 (empty shards skipped)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    for path in paths:
        with np.load(path, allow_pickle=False) as shard:
            if shard["frame"].ndim != 4:
                continue
            for name in ARRAYS:
                parts[name].append(shard[name])
    if not parts["frame"]:
        raise OptionError("no training examples in the shards given")
    return {name: np.concatenate(values) for name, values in parts.items()}
