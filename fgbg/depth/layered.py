"""The ``layered`` depth rule: bg inverse-depth map + the fg as a flat layer at its foot.

A pasted fg stands on the surface at its foot point and takes the bg's inverse depth
there; the composite's depth is the bg map with the fg's visible pixels set to that value:
a z-buffer. With a real bg depth map (a sidecar, a rendered room, a network run on the bg)
bg pixels nearer than the fg's layer hide it (:func:`nearer_than_layer`); with the
ground-plane prior nothing in the bg stands up, and the fg is in front by construction.
"""

from __future__ import annotations

import numpy as np


def horizon_row(size: int, horizon: float) -> int:
    """The image row of the horizon, ``horizon`` being a fraction of the height."""
    return int(round(horizon * (size - 1)))


def ground_plane_prior(size: int, horizon: float) -> np.ndarray:
    """Inverse depth of a flat floor seen by a level pinhole camera.

    Below the horizon inverse depth is linear in the image row (1 at the bottom row),
    above it 0 (far or unknown).

    Returns:
        float32 (size, size) in [0, 1], constant along each row.

    >>> d = ground_plane_prior(5, 0.5)
    >>> d[:, 0].tolist()
    [0.0, 0.0, 0.0, 0.5, 1.0]
    """
    h = horizon_row(size, horizon)
    rows = np.arange(size, dtype=np.float32)
    col = np.clip((rows - h) / max(size - 1 - h, 1), 0.0, 1.0)
    return np.repeat(col[:, None], size, axis=1).astype(np.float32)


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
