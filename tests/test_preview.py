"""Pictures written by `splitmerge.video.preview`."""

import cv2
import numpy as np

from splitmerge.video.preview import write_jpeg


def test_write_jpeg_writes_a_readable_picture(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15] = (255, 0, 0)   # red on the left, in RGB
    path = write_jpeg(tmp_path / "picture.jpg", image)
    read = cv2.imread(str(path))[..., ::-1]
    assert read.shape == image.shape and read[10, 5, 0] > 200 and read[10, 25].max() < 40
    assert not list(tmp_path.glob("*.tmp*"))
