"""YOLO segmentation labels (Ultralytics): one row per object, ``class x1 y1 x2 y2 ...`` in [0, 1].

The class is the category id - 1. The outline is that of the visible mask (OpenCV's outer
contours, at pixel indices / size, as Ultralytics' own converters write them, so its
``fillPoly`` gives the mask back). An object that an occluder splits into parts gets one
polygon, the parts joined as Ultralytics' ``merge_multi_segment`` joins the polygons of a COCO
object: at their closest vertices, by zero-width bridges walked out and back (here along the
shortest tree of bridges rather than a chain in the given order). Holes are not cut out
(outer contours, as Ultralytics' converters do).
"""

from __future__ import annotations

import json

import cv2
import numpy as np

MIN_POINTS = 3  # Ultralytics reads a row of fewer points as a box, not a polygon


def outline(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """int32 (N, 2) (x, y) pixel indices: one closed outline around every part of a mask.

    Args:
        mask: uint8/bool (h, w), nonzero = the object (not empty): the frame, or a box of it.
        offset: (x, y) of the mask's top-left pixel in the frame, added to the outline.

    A mask in one part gives its outer contour; several parts are joined (:func:`join_parts`).
    An outline of fewer than 3 points (a part one pixel wide) is replaced by its box's 4
    corners, the same pixels.
    """
    binary = mask if mask.dtype == np.uint8 else (mask != 0).astype(np.uint8)  # OpenCV: nonzero is in
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    parts = [c.reshape(-1, 2) for c in contours]
    path = parts[0] if len(parts) == 1 else join_parts(parts)
    if len(path) < MIN_POINTS:
        (x0, y0), (x1, y1) = path.min(axis=0), path.max(axis=0)
        path = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], path.dtype)
    return path


def join_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Closed outlines (N_k, 2) as one closed path (M, 2) that visits every vertex of every part.

    As Ultralytics' ``merge_multi_segment`` joins the polygons of a COCO object: a chain of
    parts, each joined to the next at their closest pair of vertices, every bridge walked out
    and back, so the filled path is the parts plus lines of zero width. Filled, a bridge is a
    line of pixels, so the chain here starts at the longest outline and goes on each time to
    the part whose box is nearest (Ultralytics keeps the order it was given).

    >>> square = lambda x: np.array([[x, 0], [x + 1, 0], [x + 1, 1], [x, 1]])
    >>> join_parts([square(0), square(3)]).tolist()
    [[0, 0], [1, 0], [3, 0], [4, 0], [4, 1], [3, 1], [3, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    """
    order = chain_order([cv2.boundingRect(p) for p in parts], [len(p) for p in parts])
    children: dict[int, list[tuple[int, int, int]]] = {k: [] for k in order}
    for a, b in zip(order, order[1:]):
        i, j = closest_vertices(parts[a], parts[b])
        children[a].append((i, b, j))
    return np.concatenate(_walk(parts, children, order[0], 0))


def chain_order(boxes: list[tuple[int, int, int, int]], lengths: list[int]) -> list[int]:
    """Part indices from the longest outline on, each next the part whose box (x, y, w, h) is nearest the last one's."""
    rest = sorted(range(len(boxes)), key=lambda k: -lengths[k])
    order = [rest.pop(0)]
    while rest:
        x, y, w, h = boxes[order[-1]]
        gaps = [max(bx - (x + w), x - (bx + bw), 0) ** 2 + max(by - (y + h), y - (by + bh), 0) ** 2
                for bx, by, bw, bh in (boxes[k] for k in rest)]  # fmt: skip
        order.append(rest.pop(gaps.index(min(gaps))))
    return order


def closest_vertices(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) of the closest pair of vertices a[i], b[j] of two int (N, 2) and (M, 2) outlines."""
    dx, dy = a[:, 0, None] - b[:, 0], a[:, 1, None] - b[:, 1]  # int32 (N, M): OpenCV's points
    d = dx * dx + dy * dy
    i, j = divmod(int(d.argmin()), d.shape[1])
    return i, j


def _walk(parts: list[np.ndarray], children: dict, k: int, start: int) -> list[np.ndarray]:
    """Pieces of the path round part ``k`` from vertex ``start`` back to it, with a detour into
    each child at the vertex its bridge leaves from (out along the bridge, round the child, back)."""
    ring = parts[k]
    n = len(ring)
    closed = np.concatenate([ring[start:], ring[: start + 1]])  # from start round to it again
    pieces, done = [], 0
    for offset, child, j in sorted(((i - start) % n, child, j) for i, child, j in children[k]):
        pieces.append(closed[done : offset + 1])
        pieces += _walk(parts, children, child, j)
        pieces.append(closed[offset : offset + 1])  # back across the bridge
        done = offset + 1
    pieces.append(closed[done:])
    return pieces


class RowWriter:
    """Label rows for (S, S) images: the normalised coordinates of pixel indices, formatted once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.text = np.array([f"{i / size:.6g}" for i in range(size)], dtype=object)  # index -> "0.446429"

    def row(self, class_index: int, path: np.ndarray) -> str:
        """``class x1 y1 x2 y2 ...`` of an outline (N, 2) of pixel indices."""
        return f"{class_index} " + " ".join(self.text[path.ravel()].tolist())


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
