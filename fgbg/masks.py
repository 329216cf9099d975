"""Masks: the one module that turns bool masks into what annotations hold, and back. Pure numpy.

- :func:`box`: the tight box [x, y, w, h] of a mask, to pixel edges;
- :func:`rle_encode`: COCO compressed RLE: run lengths in numpy, strings by pycocotools, tested
  byte for byte against its encoder; :func:`id_masks`: every object of an id map (RLE, box, area)
  from one pass over it;
- :func:`rle_decode`: COCO compressed RLE read on its own, without pycocotools, so that a damaged
  string is a ``ValueError`` (pycocotools' decoder would write past its buffer). The tests check
  it against pycocotools;
- :func:`outline`: one closed polygon per object (YOLO segmentation labels) whose even-odd fill
  (``cv2.fillPoly``, as Ultralytics fills it) is the mask: the outer contours of its parts and
  the contours of its holes, joined along their shortest tree by bridges walked out and back.

Used by ``make`` (annotations), ``exports`` (COCO, YOLO) and ``inspect`` (verify, pictures).
Shapes: a mask is bool or uint8 (H, W), nonzero = in; (x, y) is the column and row of a pixel.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import cv2
import numpy as np
from pycocotools import mask as coco_mask

MIN_POINTS = 3  # Ultralytics reads a row of fewer points as a box, not a polygon


def box(mask: np.ndarray, x: int = 0, y: int = 0) -> list[int]:
    """[x, y, w, h] of the tight box around a bool mask whose top-left is at (x, y), to pixel edges;
    [0, 0, 0, 0] if empty."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if not len(cols):
        return [0, 0, 0, 0]
    return [x + int(cols[0]), y + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def rle_encode(mask: np.ndarray, frame: tuple[int, int] | None = None, x: int = 0, y: int = 0) -> dict:
    """A bool mask as COCO compressed RLE of the frame (H, W) with the mask's top-left at (x, y)
    (default: the mask is the frame): ``{"size": [H, W], "counts": str}``, as pycocotools' ``encode``
    of the frame gives it (tested), without making the frame.

    Examples:
        >>> rle_encode(np.array([[0, 1, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 1, 1, 0]], bool))
        {'size': [3, 5], 'counts': '32320'}
    """
    h, w = mask.shape
    height, width = (h, w) if frame is None else frame
    columns = np.zeros((w, height), bool)  # the mask's columns of the frame, top to bottom
    columns[:, y : y + h] = mask.T
    edges = np.diff(columns.ravel(), prepend=False, append=False)  # where a run of ones starts or ends
    return rle_strings([run_lengths(np.flatnonzero(edges) + x * height, height * width)], height, width)[0]


class IdMasks(NamedTuple):
    """Every object's visible mask in an id map: COCO RLE, tight box and area, object i at index i - 1."""

    rles: list[dict]  # {"size": [H, W], "counts": str}
    boxes: np.ndarray  # int64 (count, 4): [x, y, w, h] to pixel edges, zeros where nothing is seen
    areas: np.ndarray  # int64 (count,): pixels


def id_masks(ids: np.ndarray, count: int) -> IdMasks:
    """The masks ``ids == i`` of an id map for i in 1..count, from one pass over it in column order:
    RLEs equal to ``rle_encode(ids == i)``, boxes to ``box(ids == i)`` (both tested), areas.

    Args:
        ids: uint (H, W), 0 = background, i = object i.
        count: objects; an id absent from the map gets an empty mask.
    """
    height, width = ids.shape
    flat = ids.T.ravel()
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])  # every run of one value
    ends = np.append(starts[1:], flat.size)
    values = flat[starts]
    order = np.argsort(values, kind="stable")  # the runs of each id together, in pixel order
    bounds = np.searchsorted(values[order], np.arange(1, count + 2))
    first, last = bounds[:-1], bounds[1:]  # object i's runs: order[first[i - 1]:last[i - 1]]
    s, e = starts[order[bounds[0] : bounds[-1]]], ends[order[bounds[0] : bounds[-1]]]
    changes = np.stack([s, e], axis=1).ravel()
    rles = rle_strings([run_lengths(changes[2 * (a - bounds[0]) : 2 * (b - bounds[0])], flat.size) for a, b in zip(first, last)], height, width)
    boxes, areas = np.zeros((count, 4), np.int64), np.zeros(count, np.int64)
    seen = last > first
    if seen.any():
        at = (first - bounds[0])[seen]  # each seen object's first run in s, e
        wraps = (e - 1) // height > s // height  # a run down the end of one column and on into the next
        top = np.minimum.reduceat(np.where(wraps, 0, s % height), at)
        bottom = np.maximum.reduceat(np.where(wraps, height - 1, (e - 1) % height), at)
        left, right = s[at] // height, (e[np.append(at[1:], len(e)) - 1] - 1) // height  # runs are in pixel order
        boxes[seen] = np.stack([left, top, right - left + 1, bottom - top + 1], axis=1)
        areas[seen] = np.add.reduceat(e - s, at)
    return IdMasks(rles, boxes, areas)


def run_lengths(changes: np.ndarray, total: int) -> np.ndarray:
    """COCO run lengths (zeros first) of a mask of ``total`` pixels, column-major, from the sorted pixel
    indices where a run of ones starts or ends; as pycocotools counts them, with no zeros after a last
    run that ends on the last pixel."""
    runs = np.diff(np.concatenate([[0], changes, [total]]).astype(np.int64))
    return runs[:-1] if len(runs) > 1 and runs[-1] == 0 else runs


def rle_strings(runs: list[np.ndarray], height: int, width: int) -> list[dict]:
    """Masks' COCO run lengths (each int (m,), zeros first) as compressed RLE dicts, the strings written
    by pycocotools (its C ``rleToString``: one pass over the counts, no mask)."""
    encoded = coco_mask.frPyObjects([{"size": [height, width], "counts": r.astype(np.uint32)} for r in runs], height, width)
    return [{"size": [height, width], "counts": e["counts"].decode("ascii")} for e in encoded]


def rle_counts(counts: str) -> np.ndarray:
    """The run lengths of a COCO compressed RLE string: int64 (m,), zeros first, column-major.

    Each count is written as 5-bit groups (low first) in the characters 48..111, the 0x20 bit
    meaning "more groups follow" and 0x10 of the last group the sign; from the third count on,
    the value stored is the difference to the count two places before (pycocotools'
    ``rleToString``).

    Raises:
        ValueError: a character outside 48..111, or a number cut short.

    Examples:
        >>> rle_counts("32320").tolist()  # stored 3, 2, 3, 4 - 2, 3 - 3
        [3, 2, 3, 4, 3]
    """
    codes = np.frombuffer(counts.encode("ascii", errors="replace"), np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        return np.zeros(0, np.int64)
    if codes.min() < 0 or codes.max() > 63:
        raise ValueError("counts hold a character outside the RLE alphabet")
    last = (codes & 0x20) == 0  # the last 5-bit group of a number
    if not last[-1]:
        raise ValueError("counts end in the middle of a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts).max() >= 12:  # 60 bits: a run longer than any image
        raise ValueError("counts hold a number too large for an image")
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    shift = 5 * (np.arange(codes.size) - starts[group])
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    negative = (codes[ends] & 0x10) != 0
    values = values - negative * (np.int64(1) << (5 * (ends - starts + 1)))
    out = values.copy()
    out[3::2] = np.cumsum(values[1::2])[1:]  # count m (m > 2) = stored + count m - 2
    out[4::2] = np.cumsum(values[2::2])[1:]
    return out


def rle_decode(rle: dict) -> np.ndarray:
    """A COCO compressed RLE ``{"size": [H, W], "counts": str}`` -> bool (H, W).

    Raises:
        ValueError: not such a dict, a damaged string, a negative run, or runs that do not add
            up to H * W.

    Examples:
        >>> rle_decode({"size": [3, 5], "counts": "32320"}).astype(int).tolist()
        [[0, 1, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 1, 1, 0]]
    """
    if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str):
        raise ValueError("not a compressed RLE ({size, counts: str})")
    size = rle.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
        raise ValueError(f"size {size!r} is not [H, W]")
    h, w = size
    runs = rle_counts(rle["counts"])
    if len(runs) and runs.min() < 0:
        raise ValueError("a negative run length")
    if int(runs.sum()) != h * w:
        raise ValueError(f"runs cover {int(runs.sum())} pixels, not {h}x{w}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape(w, h).T


def outline(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """int32 (N, 2), N >= 3: one closed polygon of (x, y) pixel indices whose even-odd fill is the mask.

    Args:
        mask: uint8/bool (h, w), nonzero = the object (not empty): the frame, or a box of it.
        offset: (x, y) of the mask's top-left pixel in the frame, added to the outline.

    The rings are OpenCV's contours through the mask's boundary pixels (``RETR_CCOMP``): the
    outer contour of every part and the contour of every hole. A mask in one part without holes
    gives its outer contour; otherwise the rings are joined into one path by bridges walked out
    and back (:func:`join_rings`). Filled by ``cv2.fillPoly`` (Ultralytics' ``polygon2mask``),
    whose even-odd rule counts a hole's pixels twice, holes stay empty and a part standing in a
    hole is filled again. A path of fewer than 3 points (a part one pixel wide, along a line) is
    walked there and back, so that it fills the line's pixels and no more.

    >>> sliver = np.eye(3, dtype=np.uint8)  # 3 pixels on a diagonal
    >>> outline(sliver).tolist()
    [[0, 0], [2, 2], [0, 0]]
    """
    binary = mask if mask.dtype == np.uint8 else (mask != 0).astype(np.uint8)  # OpenCV: nonzero is in
    contours, _ = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    rings = [c.reshape(-1, 2) for c in contours]
    path = rings[0] if len(rings) == 1 else join_rings(rings)
    if len(path) < MIN_POINTS:
        path = np.resize(path, (MIN_POINTS, 2))  # [a, b] -> [a, b, a]; [a] -> [a, a, a]
    return path


def join_rings(rings: list[np.ndarray]) -> np.ndarray:
    """Closed rings (N_k, 2) as one closed path (M, 2) that visits every vertex of every ring.

    The rings are joined along a minimum spanning tree of their closest-vertex distances
    (:func:`spanning_tree`), every bridge walked out and back, so the filled path is the rings
    plus lines of zero width (one pixel wide, filled). Ultralytics' ``merge_multi_segment``
    joins the polygons of a COCO object the same way, but along a chain in the order given.
    The path starts at the first vertex of the longest ring.

    >>> square = lambda x: np.array([[x, 0], [x + 1, 0], [x + 1, 1], [x, 1]])
    >>> join_rings([square(0), square(3)]).tolist()
    [[0, 0], [1, 0], [3, 0], [4, 0], [4, 1], [3, 1], [3, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    """
    children: dict[int, list[tuple[int, int, int]]] = {k: [] for k in range(len(rings))}
    bridges = spanning_tree(rings)
    for a, i, b, j in bridges:
        children[a].append((i, b, j))
    return np.concatenate(_walk(rings, children, bridges[0][0]))


def spanning_tree(rings: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
    """The bridges (a, i, b, j), from vertex i of ring a to vertex j of ring b, of a minimum
    spanning tree over two or more rings of int32 (N_k, 2) vertices, a ring's distance to
    another that of their closest vertices. It grows from the longest ring (the first bridge's
    a); each bridge leads from a ring already in the tree to a new one.

    Prim's algorithm with lazy distances: a ring that joins the tree offers every ring outside
    it the gap between their boxes, a lower bound; an offer taken from the heap with its bound
    is measured (:func:`closest_vertices`) and put back, and an offer to a ring already in the
    tree is dropped unmeasured. Far apart rings cost nothing.

    >>> dot = lambda x, y: np.array([[x, y]])
    >>> spanning_tree([dot(0, 0), dot(9, 0), dot(3, 0), dot(3, 2)])
    [(0, 0, 2, 0), (2, 0, 3, 0), (2, 0, 1, 0)]
    """
    root = max(range(len(rings)), key=lambda k: len(rings[k]))
    if len(rings) == 2:  # the one bridge
        _, i, j = closest_vertices(rings[root], rings[1 - root])
        return [(root, i, 1 - root, j)]
    boxes = [cv2.boundingRect(r) for r in rings]  # (x, y, w, h)
    outside, heap, bridges = set(range(len(rings))), [], []
    a = root
    while True:
        outside.discard(a)
        if not outside:
            return bridges
        for b in outside:
            heapq.heappush(heap, (box_gap(boxes[a], boxes[b]), False, a, b))
        while True:
            distance, measured, a, b, *at = heapq.heappop(heap)
            if b not in outside:
                continue
            if measured:
                break
            distance, i, j = closest_vertices(rings[a], rings[b])
            heapq.heappush(heap, (distance, True, a, b, i, j))
        bridges.append((a, at[0], b, at[1]))
        a = b


def box_gap(p: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> int:
    """Squared distance between the nearest pixels of two boxes (x, y, w, h); 0 if they overlap."""
    gx = max(q[0] - (p[0] + p[2] - 1), p[0] - (q[0] + q[2] - 1), 0)
    gy = max(q[1] - (p[1] + p[3] - 1), p[1] - (q[1] + q[3] - 1), 0)
    return gx * gx + gy * gy


def closest_vertices(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(squared distance, i, j) of the closest pair of vertices a[i], b[j] of two int32 (N, 2) and (M, 2) rings."""
    dx, dy = a[:, 0, None] - b[:, 0], a[:, 1, None] - b[:, 1]  # int32 (N, M): OpenCV's points
    d = dx * dx + dy * dy
    k = int(d.argmin())
    return (int(d.flat[k]), *divmod(k, d.shape[1]))


def _walk(rings: list[np.ndarray], children: dict, root: int) -> list[np.ndarray]:
    """Pieces of the path round ring ``root`` from its vertex 0 back to it, with a detour into each
    child at the vertex its bridge leaves from: out along the bridge, round the child (and its
    children) from the vertex the bridge reaches, back. A stack, not recursion: a tree may be
    deeper than Python's recursion limit (a row of a thousand specks)."""
    pieces, stack = [], [_frame(rings[root], children[root], 0)]
    while stack:
        closed, detours, done = stack[-1]
        if detours:
            offset, child, j = detours.pop()
            pieces.append(closed[done : offset + 1])
            stack[-1][2] = offset + 1
            if children[child]:
                stack.append(_frame(rings[child], children[child], j))
                continue
            pieces += [rings[child][j:], rings[child][: j + 1], closed[offset : offset + 1]]  # a leaf: round it, and back
            continue
        pieces.append(closed[done:])
        stack.pop()
        if stack:
            closed, _, done = stack[-1]
            pieces.append(closed[done - 1 : done])  # back across the bridge
    return pieces


def _frame(ring: np.ndarray, detours: list[tuple[int, int, int]], start: int) -> list:
    """[ring closed from vertex ``start`` round to it again, its detours (offset from start, child,
    child's vertex) last first, pieces done so far]."""
    n = len(ring)
    closed = np.concatenate([ring[start:], ring[: start + 1]])
    return [closed, sorted((((i - start) % n, child, j) for i, child, j in detours), reverse=True), 0]
