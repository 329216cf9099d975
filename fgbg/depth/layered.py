"""The ``layered`` depth rule: bg inverse-depth map + the fg as a flat layer at its foot.

A pasted fg stands on the surface at its foot point and takes the bg's inverse depth
there; the composite's depth is the bg map with the fg's visible pixels set to that value:
a z-buffer. With a real bg depth map (a sidecar, a rendered room, a network run on the bg)
bg pixels nearer than the fg's layer hide it (:func:`nearer_than_layer`); with the
ground-plane prior nothing in the bg stands up, and the fg is in front by construction.
"""

from __future__ import annotations

import numpy as np


def horizon_row(height: int, horizon: float) -> int:
    """The image row of the horizon, ``horizon`` being a fraction of the height (in pixels)."""
    return int(round(horizon * (height - 1)))


def ground_plane_prior(frame: int | tuple[int, int], horizon: float) -> np.ndarray:
    """Inverse depth of a flat floor seen by a level pinhole camera.

    Below the horizon inverse depth is linear in the image row (1 at the bottom row),
    above it 0 (far or unknown).

    Returns:
        float32 (H, W) in [0, 1], constant along each row; ``frame`` is (H, W), or S for (S, S).

    >>> d = ground_plane_prior(5, 0.5)
    >>> d[:, 0].tolist()
    [0.0, 0.0, 0.0, 0.5, 1.0]
    """
    height, width = (frame, frame) if isinstance(frame, int) else frame
    h = horizon_row(height, horizon)
    rows = np.arange(height, dtype=np.float32)
    col = np.clip((rows - h) / max(height - 1 - h, 1), 0.0, 1.0)
    return np.repeat(col[:, None], width, axis=1).astype(np.float32)


def layered_depth(bg_depth: np.ndarray, mask: np.ndarray, fg_value) -> np.ndarray:
    """The bg map with the fg's mask pixels set to the fg's value.

    Args:
        bg_depth: (S, S) inverse depth, any dtype (float in [0, 1] or quantised).
        mask: (S, S), non-zero where the fg is.
        fg_value: the bg's inverse depth at the fg's foot, same dtype as bg_depth.
    """
    depth = bg_depth.copy()
    depth[mask > 0] = fg_value
    return depth


# The least relative growth of inverse depth per row, times the image height, of a surface a fg
# may stand on (see standable): a floor's is at least 1, a wall's under ~0.2.
STANDABLE_RATE = 0.5


def standable(depth: np.ndarray, rate: float = STANDABLE_RATE) -> np.ndarray:
    """Where a fg can stand on a bg with a real depth map: surfaces that face up (floor, table tops).

    A horizontal surface below a camera without roll has inverse depth proportional to the rows
    below its horizon, so ``d ln(v) / d row = 1 / (row - horizon)``, at least 1 / S whenever the
    horizon is above the image's middle or inside the image. A wall grows at most
    ``tan(pitch) / focal`` (about 0.2 / S for a camera looking 8 degrees up) or falls downwards
    (a camera looking down); a ceiling falls. So a pixel is standable where its inverse depth grows
    downwards faster than ``rate / S`` of its value, towards the row below and from the row above
    alike (a floor's inverse depth is linear in the row; at the edge of a surface, where the depth
    jumps, only one side grows). The test reads only the depth map, so it holds for any sidecar
    whose inverse depth is proportional to the true one (an RGB-D camera, a render).

    Args:
        depth: float (S, S) inverse depth in [0, 1] (near = 1, 0 = unknown).

    Returns:
        bool (S, S); the top and bottom rows compare with their one neighbour.

    >>> floor = ground_plane_prior(6, 0.0)  # a floor from the top row down
    >>> standable(floor)[:, 0].tolist()
    [False, True, True, True, True, True]
    >>> standable(np.full((6, 6), 0.3)).any()  # a wall facing the camera
    np.False_
    """
    v = depth.astype(np.float64)
    step = np.diff(v, axis=0)  # step[r] = v[r + 1] - v[r]
    growth = np.empty_like(v)
    growth[1:-1] = np.minimum(step[1:], step[:-1])
    growth[0], growth[-1] = step[0], step[-1]
    return (v > 0) & (growth * v.shape[0] > rate * v)


# A bg pixel hides the fg only when nearer than its layer by more than this (inverse depth): the
# surface the fg stands on, equal to the foot's value up to rounding, never hides its own foot.
OCCLUSION_MARGIN = 1.0 / 256


def nearer_than_layer(bg_depth: np.ndarray, fg_value: float, margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """Where the bg stands in front of a flat fg layer at inverse depth ``fg_value``.

    Args:
        bg_depth: float (h, w) inverse depth in [0, 1] (near = 1), e.g. the bg under the fg's box.
        fg_value: the fg layer's inverse depth in [0, 1] (the bg's value at its foot).

    Returns:
        bool (h, w): True where the bg hides the fg.

    >>> nearer_than_layer(np.array([[0.2, 0.5, 0.9]]), 0.5).tolist()
    [[False, False, True]]
    """
    return bg_depth > fg_value + margin


def quantize_depth(depth: np.ndarray, bits: int) -> np.ndarray:
    """float inverse depth in [0, 1] -> uint8 (bits=8) or uint16 (bits=16), value * (2**bits - 1)."""
    top = (1 << bits) - 1
    q = np.rint(np.clip(depth, 0.0, 1.0) * top)
    return q.astype(np.uint8 if bits == 8 else np.uint16)
