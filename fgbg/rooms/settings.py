"""The settings of a set of rooms that the command line shows, and its rooms.json: importing this costs nothing."""

from __future__ import annotations

import json
from pathlib import Path

from fgbg.errors import UserError

DEPTH_SCALE_M = 0.4  # inverse depth 1 at 0.4 m: nearer than anything a room's camera is placed at
RENDERERS = ("auto", "egl", "numpy")
ROOMS_JSON = "rooms.json"  # beside the rooms: the set's renderer, seed, size, textures and depth scale


def read_set(folder: Path) -> dict | None:
    """A folder's rooms.json (what ``fgbg rooms`` recorded of the set), or None where there is none.

    Raises:
        UserError: naming the file, when it cannot be read or is not a JSON object.
    """
    path = Path(folder) / ROOMS_JSON
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot be read ({e}); remove it, or render the rooms again") from None
    if not isinstance(recorded, dict):
        raise UserError(f"{path}: not a JSON object; remove it, or render the rooms again")
    return recorded
