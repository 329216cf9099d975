"""YOLO segmentation labels (Ultralytics): one row per object, ``class x1 y1 x2 y2 ...`` in [0, 1].

The class is the category id - 1. The polygon is the visible mask's outline
(:func:`fgbg.masks.outline`: outer contours and holes, joined by bridges walked out and back).

Vertex convention: a vertex is the (column, row) index of a boundary pixel divided by the image's
width W (column) and height H (row), six decimals (pixel 100 of 224: 0.446429), as Ultralytics' mask converter
(``convert_segment_masks_to_yolo_seg``) writes OpenCV's contours. Scaled back by W and H and rounded,
the vertices are those pixel indices, and ``cv2.fillPoly`` of them (Ultralytics'
``polygon2mask``) fills the mask's pixels back. Read in Ultralytics' continuous coordinates,
where pixel i spans [i, i + 1), the vertices are the boundary pixels' top-left corners, so the
box Ultralytics takes from a row (``segments2boxes``: the vertices' min and max) is 1 px
narrower and 1 px shorter than the COCO box of the same mask (w = x_max - x_min, not x_max -
x_min + 1), its centre half a pixel up and left. ``polygon2mask`` truncates the scaled vertices
to int32 rather than rounding them: at the default training size 640 that costs less than a
pixel of a 224 px image; trained at the image's own size, 96 of the 224 coordinates come back as
i - 1e-4 and land a pixel up or left.
"""

from __future__ import annotations

import json

import numpy as np


class RowWriter:
    """Label rows for images of frame (H, W). The normalised coordinate of every column index (/ W) and
    row index (/ H) is formatted once, all of the same width (index 100 of 224: b" 0.446429"), so a
    row is one table lookup."""

    def __init__(self, frame: tuple[int, int]) -> None:
        height, width = frame
        text = "".join([f" {i / width:.6f}" for i in range(width)] + [f" {i / height:.6f}" for i in range(height)])
        self.text = np.frombuffer(text.encode("ascii"), np.uint8).reshape(width + height, -1)  # (W + H, 9): i / side < 1
        self.offset = np.array([0, width])  # a vertex (x, y) reads rows x and W + y

    def row(self, class_index: int, path: np.ndarray) -> bytes:
        """``class x1 y1 x2 y2 ...`` and a newline, of an outline (N, 2) of (column, row) pixel indices."""
        return b"%d" % class_index + self.text[(path + self.offset).ravel()].tobytes() + b"\n"


def data_yaml(names: list[str], val: str = "images/val") -> str:
    """Ultralytics' dataset file: the train and val image folders and the class names (0-based).

    No ``path``: Ultralytics then takes the yaml's own folder as the root (check_det_dataset in
    ultralytics/data/utils.py), so the export can be moved or copied as it is.
    """
    lines = [
        "# made by `fgbg export yolo`; train and val are relative to this file's folder",
        "train: images/train",
        f"val: {val}",
        "names:",
        *(f"  {i}: {json.dumps(name)}" for i, name in enumerate(names)),
    ]
    return "\n".join(lines) + "\n"
