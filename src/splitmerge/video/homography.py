"""Plane maps as 3x3 matrices: points through a homography, its local similarity, and the maps that carry a
placed layer with a camera (`carried_matrices`).

Conventions as `decompose.camera`: matrices act on pixel coordinates (x, y, 1) with pixel centres at integers.
"""

from __future__ import annotations

import cv2
import numpy as np


def apply_homography(matrix: np.ndarray, points) -> np.ndarray:
    """(N, 2) float64: `points` (N, 2) or (2,) mapped by `matrix` (3, 3); one point gives (2,)."""
    points = np.asarray(points, dtype=np.float64)
    flat = points.reshape(-1, 2)
    mapped = np.concatenate([flat, np.ones((len(flat), 1))], axis=1) @ np.asarray(matrix, np.float64).T
    result = mapped[:, :2] / mapped[:, 2:3]
    return result.reshape(points.shape)


def translation(offset) -> np.ndarray:
    """(3, 3): x -> x + offset."""
    matrix = np.eye(3)
    matrix[:2, 2] = offset
    return matrix


def similarity(scale: float, degrees: float, source_center, target_center) -> np.ndarray:
    """(3, 3): rotate by `degrees` (counter-clockwise on screen, as OpenCV's) and scale about `source_center`,
    landing it on `target_center`."""
    matrix = np.eye(3)
    matrix[:2] = cv2.getRotationMatrix2D((0.0, 0.0), degrees, scale)
    return translation(target_center) @ matrix @ translation(-np.asarray(source_center, np.float64))


def local_similarity(matrix: np.ndarray, point) -> np.ndarray:
    """(3, 3) the similarity (scale, rotation, shift) that best follows the homography `matrix` around `point`
    (x, y): it maps `point` exactly where `matrix` does, with the scale (sqrt |det|) and the rotation of the
    homography's Jacobian there. A layer carried by it keeps its shape (a standing subject is not sheared like
    the ground it stands on) while its anchor stays on its spot of the plane."""
    matrix = np.asarray(matrix, np.float64)
    x, y = float(point[0]), float(point[1])
    w = matrix[2] @ [x, y, 1.0]
    mapped = matrix[:2] @ [x, y, 1.0] / w
    jacobian = (matrix[:2, :2] - np.outer(mapped, matrix[2, :2])) / w
    scale = float(np.sqrt(abs(np.linalg.det(jacobian))))
    angle = float(np.arctan2(jacobian[1, 0] - jacobian[0, 1], jacobian[0, 0] + jacobian[1, 1]))
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    similarity = np.eye(3)
    similarity[:2, :2] = rotation
    similarity[:2, 2] = mapped - rotation @ [x, y]
    return similarity


def carried_matrices(factor, centers, targets, camera: np.ndarray | None = None,
                     source_camera: np.ndarray | None = None) -> np.ndarray:
    """(T, 3, 3) affine maps from a subject's frames to the background's, frame by frame.

    The placement scales by `factor` (T,) about the subject's anchor `centers` (T, 2) px and puts it on `targets`
    (T, 2) px, both in first-frame coordinates. `source_camera` (T, 3, 3), the subject's own camera (its frame t
    -> its first frame), is removed first (so the anchor is a point of the subject's world, not of its screen);
    `camera` (T, 3, 3), the background's (its first frame -> frame t), then carries the placed subject to its spot
    in frame t, its size following the zoom. Both are followed by their local similarity at the anchor
    (`local_similarity`), so the anchor lands exactly where the homography takes it and the subject is not sheared.
    None = a still camera.
    """
    factor = np.asarray(factor, np.float64)
    centers, targets = np.asarray(centers, np.float64), np.asarray(targets, np.float64)
    maps = np.empty((len(factor), 3, 3))
    for t in range(len(factor)):
        placement = translation(targets[t]) @ np.diag([factor[t], factor[t], 1.0]) @ translation(-centers[t])
        before = np.eye(3)
        if source_camera is not None:  # the anchor as frame t saw it, mapped exactly onto the anchor
            seen = apply_homography(np.linalg.inv(source_camera[t]), centers[t])
            before = local_similarity(source_camera[t], seen)
        after = np.eye(3) if camera is None else local_similarity(camera[t], targets[t])
        maps[t] = after @ placement @ before
    return maps
