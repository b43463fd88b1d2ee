"""The default captioner, ``measured``: describes only what it measured, never what the subject *is*.

Without a vision-language model nothing here can name an object, so the caption says what the pixels and the
motion say: the subject's colours (CIE Lab, named by hue and lightness), its size and where it is in the frame,
the direction and speed of its own motion (measured in the camera-stabilised frame, so a pan does not read as
subject motion), the camera's motion, and the scene's brightness and colour cast. For example:
"A medium-sized light grey and brown subject in the lower centre of the frame moves slowly to the right.
The camera pans left. A bright scene with a warm cast."
"""

from __future__ import annotations

import cv2
import numpy as np

from .backends import Backend, SplitClip, register
from .filters import present_frames

SUBJECT = 0.5          # alpha above this is the subject's body (colour, centroid, area)
PIXEL_SAMPLES = 20000  # colour statistics use at most this many pixels (subsampled evenly)
ACHROMATIC = 14.0      # Lab chroma below this is a grey
DISTINCT = 25.0        # Lab distance (CIE76) for a second colour to be worth naming
HUES = ((20, "pink"), (50, "red"), (75, "orange"), (100, "yellow"), (150, "yellow-green"), (200, "green"),
        (250, "teal"), (290, "blue"), (330, "purple"), (360, "pink"))  # upper bounds of Lab hue angle, degrees


def colour_name(lab: np.ndarray) -> str:
    """Name a colour given as Lab (L in 0-100, a and b signed, CIE units): e.g. "dark red", "light grey"."""
    lightness, a, b = (float(v) for v in lab)
    chroma = float(np.hypot(a, b))
    if chroma < ACHROMATIC:
        for limit, name in ((18, "black"), (38, "dark grey"), (62, "grey"), (85, "light grey")):
            if lightness < limit:
                return name
        return "white"
    hue = float(np.degrees(np.arctan2(b, a))) % 360
    name = next(label for limit, label in HUES if hue < limit)
    if name in ("orange", "yellow", "red") and lightness < 45:
        return "brown" if name != "red" else "dark red"
    if lightness < 35:
        return f"dark {name}"
    if lightness > 80 and chroma < 35:
        return f"pale {name}"
    return name


def to_lab(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N, 3) float32 Lab in CIE units (L 0-100)."""
    lab = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab.reshape(-1, 3)


def dominant_colours(pixels: np.ndarray, seed: int = 0) -> list[tuple[str, float]]:
    """The subject's one or two main colours: [(name, share)], largest first. `pixels`: (N, 3) uint8 RGB."""
    if len(pixels) == 0:
        return []
    step = max(1, len(pixels) // PIXEL_SAMPLES)
    lab = to_lab(pixels[::step])
    if len(lab) < 8:
        return [(colour_name(np.median(lab, axis=0)), 1.0)]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(seed)
    _, labels, centres = cv2.kmeans(lab, 2, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    shares = np.bincount(labels.ravel(), minlength=2) / len(labels)
    order = np.argsort(-shares)
    named: list[tuple[str, float]] = []
    for rank, index in enumerate(order):
        name = colour_name(centres[index])
        distinct = rank == 0 or float(np.linalg.norm(centres[index] - centres[order[0]])) > DISTINCT
        if shares[index] >= 0.25 and distinct and name not in [n for n, _ in named]:
            named.append((name, float(shares[index])))
    return named


def _place(x: float, y: float, sides: bool = True) -> str:
    """Where a point (fractions of width and height) is in the frame, in words (without left or right when not
    `sides`)."""
    vertical = "upper" if y < 0.36 else "lower" if y > 0.64 else ""
    horizontal = ("left" if x < 0.36 else "right" if x > 0.64 else "") if sides else ""
    if not vertical and not horizontal:
        return "in the centre of the frame"
    if not vertical:
        return f"on the {horizontal} of the frame"
    return f"in the {vertical} {horizontal or 'centre'} of the frame"


def subject_track(clip: SplitClip, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per present frame: the subject's centroid in the camera-stabilised (reference) frame, in pixels, and its
    area as a share of the frame. Returns (frame indices (K,), centroids (K, 2) x, y, areas (K,))."""
    present = np.flatnonzero(present_frames(alpha))
    centroids, areas = [], []
    for t in present:
        ys, xs = np.nonzero(alpha[t] > SUBJECT)
        point = np.array([xs.mean(), ys.mean(), 1.0])
        mapped = clip.camera.to_reference[t] @ point
        centroids.append(mapped[:2] / mapped[2])
        areas.append(len(xs) / alpha[t].size)
    return present, np.array(centroids).reshape(-1, 2), np.array(areas)


def describe_motion(frames: np.ndarray, centroids: np.ndarray, areas: np.ndarray, height: int, fps: float,
                    sides: bool = True) -> str:
    """"moves slowly to the right", "stays in place", ... from a stabilised centroid track (pixels) over frame
    indices `frames`; speed is in frame heights per second. Without `sides`, a sideways motion is "sideways"."""
    if len(frames) < 2:
        return "stays in place"
    seconds = (frames[-1] - frames[0]) / fps
    shift = centroids[-1] - centroids[0]
    speed = float(np.linalg.norm(shift)) / height / max(seconds, 1e-6)
    growth = float(np.sqrt(areas[-1] / max(areas[0], 1e-9)))
    depth = "towards the camera" if growth > 1.35 else "away from the camera" if growth < 1 / 1.35 else ""
    if speed < 0.04:
        return f"moves {depth}" if depth else "stays in place"
    pace = "slowly" if speed < 0.15 else "steadily" if speed < 0.5 else "quickly"
    dx, dy = shift
    parts = []
    if abs(dx) >= 0.5 * abs(dy):
        parts.append(("to the right" if dx > 0 else "to the left") if sides else "sideways")
    if abs(dy) >= 0.5 * abs(dx):
        parts.append("downwards" if dy > 0 else "upwards")
    if depth:
        parts.append(depth)
    return f"moves {pace} {' and '.join(parts)}"


def describe_camera(summary: dict, height: int, width: int, sides: bool = True) -> str:
    """The camera's motion in words from `CameraMotion.summary` (pan in px/s of image content, zoom per
    second, rotation in degrees per second, shake in px); without `sides`, a pan has no left or right."""
    moves = []
    # Image content moving right means the camera turned left.
    if abs(summary["pan_x"]) > 0.03 * width:
        moves.append(("pans left" if summary["pan_x"] > 0 else "pans right") if sides else "pans")
    if abs(summary["pan_y"]) > 0.03 * height:
        moves.append("tilts up" if summary["pan_y"] > 0 else "tilts down")
    if summary["zoom"] > 1.03:
        moves.append("zooms in")
    elif summary["zoom"] < 1 / 1.03:
        moves.append("zooms out")
    if abs(summary["rotation"]) > 2.0:
        moves.append("rolls")
    shaky = summary["shake"] > 1.0
    if not moves:
        return "A handheld camera, shaking slightly." if shaky else "The camera is still."
    return f"The {'handheld ' if shaky else ''}camera {' and '.join(moves)}."


def describe_scene(frames: np.ndarray, alpha: np.ndarray) -> str:
    """Brightness and colour cast of what is not the subject: "A dim scene with a cool cast."."""
    step = max(1, frames.shape[0] // 8)
    pixels = frames[::step][alpha[::step] < SUBJECT]
    if len(pixels) == 0:
        return ""
    lab = to_lab(pixels[:: max(1, len(pixels) // PIXEL_SAMPLES)])
    lightness, a, b = np.median(lab, axis=0)
    light = "dark" if lightness < 25 else "dim" if lightness < 45 else "bright" if lightness > 70 else "evenly lit"
    cast = "a warm cast" if b > 12 else "a cool cast" if b < -8 else "neutral colours"
    if abs(a) > 12 and abs(a) > abs(b):
        cast = "a green cast" if a < 0 else "a magenta cast"
    return f"{'An' if light[0] in 'aeiou' else 'A'} {light} scene with {cast}."


def measured_caption(clip: SplitClip, alpha: np.ndarray, sides: bool = True) -> str:
    """One to three sentences about `clip` (T, H, W, 3) uint8 with subject matte `alpha` (T, H, W): the
    subject's size, colours, place and motion, the camera, the scene's light. Without `sides`, no word says left
    or right (where the subject is, which way it or the camera goes): a benchmark's plain prompt (docs/cli.md)."""
    frames = clip.frames
    height, width = clip.size
    present, centroids, areas = subject_track(clip, alpha)
    sentences = []
    if len(present):
        pixels = frames[present][alpha[present] > SUBJECT]
        colours = [name for name, _ in dominant_colours(pixels)]
        mean_area = float(areas.mean())
        size = "small" if mean_area < 0.03 else "medium-sized" if mean_area < 0.12 else "large"
        ys, xs = np.nonzero(alpha[present[len(present) // 2]] > SUBJECT)
        where = _place(xs.mean() / width, ys.mean() / height, sides)
        motion = describe_motion(present, centroids, areas, height, clip.fps, sides)
        sentences.append(f"A {size} {' and '.join(colours)} subject {where} {motion}.")
    sentences.append(describe_camera(clip.camera.summary(clip.fps), height, width, sides))
    scene = describe_scene(frames, alpha)
    if scene:
        sentences.append(scene)
    return " ".join(sentences)


def plain_caption(frames: np.ndarray, alpha: np.ndarray, fps: float) -> str:
    """What a user would write for a subject layer as given (a benchmark's or validation's plain prompt): the
    measured caption of `frames` (T, H, W, 3) uint8 (the layer over its background) with matte `alpha`
    (T, H, W), with no word for left or right."""
    return measured_caption(SplitClip(frames, fps), alpha, sides=False)


@register("captioner")
class MeasuredCaptioner(Backend):
    """Colour, size, position and motion of the subject, camera motion, scene light; no object names."""

    name = "measured"
    description = "describes what it measures (colour, size, motion, camera, light); never names objects (no weights)"

    def describe(self, clip: SplitClip, alpha: np.ndarray) -> str:
        """`measured_caption` of `clip` (T, H, W, 3) uint8 with subject matte `alpha` (T, H, W)."""
        return measured_caption(clip, alpha)
