"""Depth sources. Every map is inverse depth in [0, 1], near = 1, one scale per store.

``layered`` (the default) needs no model: see :mod:`fgbg.depth.layered`.
"""

from fgbg.depth.layered import ground_plane_prior, layered_depth, quantize_depth

__all__ = ["ground_plane_prior", "layered_depth", "quantize_depth"]
