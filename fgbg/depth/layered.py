"""The ``layered`` depth rule: bg inverse-depth map + the fg as a flat layer at its foot.

A pasted fg stands on the surface at its foot point and takes the bg's inverse depth
there; the composite's depth is the bg map with the fg's mask pixels set to that value
(a z-buffer in which the fg is in front by construction).
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


def quantize_depth(depth: np.ndarray, bits: int) -> np.ndarray:
    """float inverse depth in [0, 1] -> uint8 (bits=8) or uint16 (bits=16), value * (2**bits - 1)."""
    top = (1 << bits) - 1
    q = np.rint(np.clip(depth, 0.0, 1.0) * top)
    return q.astype(np.uint8 if bits == 8 else np.uint16)
