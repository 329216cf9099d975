"""Rendered rooms: simple indoor scenes with exact depth, written as backgrounds with depth sidecars.

:mod:`~fgbg.rooms.scene` describes a room (pure data, seeded by (seed, index)),
:mod:`~fgbg.rooms.textures` makes the set's texture bank, :mod:`~fgbg.rooms.raster_gl` renders
it with OpenGL in a headless EGL context (``pip install 'fgbg[rooms]'``), :mod:`~fgbg.rooms.raycast`
with numpy where no EGL context can be made, and :mod:`~fgbg.rooms.write` writes the folder.
The names below load on first use, so that ``fgbg --help`` does not pay for numpy and Pillow.
"""

import importlib

__all__ = ["DEPTH_SCALE_M", "ROOMS_JSON", "RoomsReport", "render_rooms"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("fgbg.rooms.write"), name)
    raise AttributeError(f"module 'fgbg.rooms' has no attribute {name!r}")
