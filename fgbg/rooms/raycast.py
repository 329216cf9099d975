"""The fallback renderer: numpy ray casting of the room, its boxes and its cylinders.

One ray per pixel centre, all rays at once (arrays of shape (P,) and (P, 3), P = S * S); the
loops run over the scene's few primitives, never over pixels. Intersections are exact
(planes, slabs, the quadric of a cylinder), shading is the one of :class:`fgbg.rooms.scene.Light`
and texture lookups are bilinear with wrap-around, so it draws the same scene as the EGL
renderer (whose cylinders are polygons and whose textures are mip-mapped).
"""

from __future__ import annotations

import numpy as np

from fgbg.rooms.scene import LIGHT_FALLOFF_M, Camera, Material, Scene, frame_hw, half_extents, planar_uv

NAME = "numpy"
EPS = 1e-9


def pixel_rays(camera: Camera, frame: int | tuple[int, int]) -> np.ndarray:
    """float64 (H * W, 3) ray directions through the pixel centres of a frame (H, W) (or S: S x S), row
    by row from the top, scaled so that their component along the optical axis is 1: a hit at ray
    parameter t has planar depth t. The camera's ``fov`` spans the shorter side."""
    forward, right, up = camera.basis()
    tan = np.tan(camera.fov / 2)
    height, width = frame_hw(frame)
    reach_x, reach_y = half_extents(frame)
    xn = np.tile(((np.arange(width) + 0.5) * (2.0 / width) - 1.0) * reach_x, height)  # left to right
    yn = -np.repeat(((np.arange(height) + 0.5) * (2.0 / height) - 1.0) * reach_y, width)  # + at the top row
    return forward + tan * (xn[:, None] * right + yn[:, None] * up)


class Hits:
    """The nearest surface found so far along every ray: t, normal, texture coordinates, material."""

    def __init__(self, n: int):
        self.t = np.full(n, np.inf)
        self.normal = np.zeros((n, 3))
        self.uv = np.zeros((n, 2))
        self.layer = np.zeros(n, np.int64)
        self.tint = np.ones((n, 3))
        self.tile = np.ones(n)

    def take(self, rays, hit: np.ndarray, t: np.ndarray, normal: np.ndarray, uv: np.ndarray, material: Material | list) -> None:
        """Keep the candidates ``t`` (R,) of the rays ``rays`` (an index of R rays, or a slice of all)
        where ``hit`` and nearer than what was found; ``uv`` in metres."""
        hit = hit & (t < self.t[rays])
        if not isinstance(rays, slice):
            rays = rays[hit]
            hit = np.flatnonzero(hit)
            self.t[rays] = t[hit]
            self.normal[rays] = normal[hit] if normal.ndim == 2 else normal
            self.uv[rays] = uv[hit]
            self.layer[rays], self.tint[rays], self.tile[rays] = material.layer, material.tint, material.tile_m
            return
        self.t[hit] = t[hit]
        self.normal[hit] = normal[hit] if normal.ndim == 2 else normal
        self.uv[hit] = uv[hit]
        if isinstance(material, Material):
            self.layer[hit], self.tint[hit], self.tile[hit] = material.layer, material.tint, material.tile_m
        else:  # one material per ray
            layer, tint, tile = material
            self.layer[hit], self.tint[hit], self.tile[hit] = layer[hit], tint[hit], tile[hit]


def cast_room(hits: Hits, o: np.ndarray, d: np.ndarray, scene: Scene) -> None:
    """The inside of the room box: every ray leaves it through exactly one face."""
    hi = np.array(scene.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_axes = np.where(d > 0, (hi - o) / d, -o / d)
    t_axes = np.where(np.abs(d) < EPS, np.inf, t_axes)
    axis = np.argmin(t_axes, axis=1)
    rows = np.arange(len(d))
    t = t_axes[rows, axis]
    positive = d[rows, axis] > 0
    normal = np.zeros_like(d)
    normal[rows, axis] = np.where(positive, -1.0, 1.0)
    # materials: axis 0 -> wall x=0 / x=W, axis 1 -> floor / ceiling, axis 2 -> wall z=0 / z=D
    mats = [scene.walls[0], scene.walls[1], scene.floor, scene.ceiling, scene.walls[2], scene.walls[3]]
    index = 2 * axis + positive
    layer = np.array([m.layer for m in mats])[index]
    tint = np.array([m.tint for m in mats])[index]
    tile = np.array([m.tile_m for m in mats])[index]
    hits.take(slice(None), np.ones(len(d), bool), t, normal, planar_uv(o + t[:, None] * d, axis), (layer, tint, tile))


def screen_rays(corners: np.ndarray, camera: Camera, frame: int | tuple[int, int]) -> np.ndarray | slice:
    """The rays (an index into :func:`pixel_rays`) of the pixels that the bounding box of ``corners``
    (K, 3) can cover: its projection's pixel rectangle, one pixel wider; all rays (a slice) when a
    corner is not in front of the camera."""
    forward, right, up = camera.basis()
    v = corners - np.asarray(camera.position)
    z = v @ forward
    if (z <= 1e-3).any():
        return slice(None)
    tan = np.tan(camera.fov / 2)
    height, width = frame_hw(frame)
    reach_x, reach_y = half_extents(frame)
    col = ((v @ right) / (z * tan * reach_x) + 1) / 2 * width - 0.5
    row = (1 - (v @ up) / (z * tan * reach_y)) / 2 * height - 0.5
    c0, c1 = max(int(np.floor(col.min())) - 1, 0), min(int(np.ceil(col.max())) + 2, width)
    r0, r1 = max(int(np.floor(row.min())) - 1, 0), min(int(np.ceil(row.max())) + 2, height)
    if c0 >= c1 or r0 >= r1:
        return np.zeros(0, np.int64)
    return (np.arange(r0, r1)[:, None] * width + np.arange(c0, c1)[None, :]).ravel()


def box_corners(lo, hi) -> np.ndarray:
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    pick = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], bool)
    return np.where(pick, hi, lo)


def cast_box(hits: Hits, o: np.ndarray, d: np.ndarray, lo, hi, material: Material, rays=slice(None)) -> None:
    """An axis-aligned box seen from outside (slab test), along the rays ``rays`` of ``d``."""
    d = d[rays]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (np.asarray(lo) - o) / d, (np.asarray(hi) - o) / d
    inside = (np.asarray(lo) <= o) & (o <= np.asarray(hi))
    near = np.where(np.abs(d) < EPS, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    far = np.where(np.abs(d) < EPS, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    axis = np.argmax(near, axis=1)
    rows = np.arange(len(d))
    t = near[rows, axis]
    hit = (t <= far.min(axis=1)) & (t > 0)
    if not hit.any():
        return
    normal = np.zeros_like(d)
    normal[rows, axis] = -np.sign(d[rows, axis])
    hits.take(rays, hit, t, normal, planar_uv(o + t[:, None] * d, axis), material)


def cast_cylinder(hits: Hits, o: np.ndarray, d: np.ndarray, cyl, rays=slice(None)) -> None:
    """An upright cylinder seen from outside: its side (the quadric's entry root) and its two caps."""
    d = d[rays]
    cx, cz = cyl.centre
    ox, oz = o[0] - cx, o[2] - cz
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox**2 + oz**2 - cyl.radius**2
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    y = o[1] + t * d[:, 1]
    side = (disc >= 0) & (a > EPS) & (t > 0) & (y >= cyl.y0) & (y <= cyl.y1)
    if side.any():
        px, pz = ox + t * d[:, 0], oz + t * d[:, 2]
        normal = np.stack([px / cyl.radius, np.zeros_like(px), pz / cyl.radius], axis=1)
        angle = np.mod(np.arctan2(pz, px), 2 * np.pi)
        hits.take(rays, side, t, normal, np.stack([angle * cyl.radius, y], axis=1), cyl.material)
    for height, up in ((cyl.y1, 1.0), (cyl.y0, -1.0)):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (height - o[1]) / d[:, 1]
        px, pz = ox + t * d[:, 0], oz + t * d[:, 2]
        cap = np.isfinite(t) & (t > 0) & (px**2 + pz**2 <= cyl.radius**2)
        if cap.any():
            hits.take(rays, cap, t, np.array([0.0, up, 0.0]), np.stack([px + cx, pz + cz], axis=1), cyl.material)


def shade(scene: Scene, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(P,) light reaching points ``p`` (P, 3) with unit normals (P, 3): ambient + Lambert, no shadows."""
    light = np.full(len(p), scene.ambient)
    for lamp in scene.lights:
        if lamp.position is not None:
            to = np.asarray(lamp.position) - p
            r = np.linalg.norm(to, axis=1)
            lam = np.einsum("ij,ij->i", normal, to) / np.maximum(r, EPS)
            light += lamp.intensity * np.maximum(lam, 0) / (1 + (r / LIGHT_FALLOFF_M) ** 2)
        else:
            light += lamp.intensity * np.maximum(normal @ -np.asarray(lamp.direction), 0)
    return light


def sample_bilinear(bank: np.ndarray, layer: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """float (P, 3) in [0, 1]: layers ``layer`` (P,) of ``bank`` uint8 (N, T, T, 3) at ``uv`` (P, 2), in
    repeats (u across, v down the rows), bilinear with wrap-around, texel centres at (k + 0.5) / T."""
    size = bank.shape[1]
    x, y = uv[:, 0] * size - 0.5, uv[:, 1] * size - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64) % size, y0.astype(np.int64) % size
    x1, y1 = (x0 + 1) % size, (y0 + 1) % size
    top = bank[layer, y0, x0] * (1 - fx) + bank[layer, y0, x1] * fx
    bottom = bank[layer, y1, x0] * (1 - fx) + bank[layer, y1, x1] * fx
    return (top * (1 - fy) + bottom * fy) / 255.0


class RaycastRenderer:
    """Renders scenes at ``frame`` (H, W) (or S: S x S) with numpy; same interface as the EGL renderer."""

    name = NAME

    def __init__(self, frame: int | tuple[int, int], bank: np.ndarray):
        self.frame, self.bank = frame_hw(frame), bank
        self.detail = f"numpy {np.__version__} ray casting"

    def render(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (H, W, 3) RGB, float32 (H, W) planar depth in metres)."""
        o = np.asarray(scene.camera.position, dtype=np.float64)
        d = pixel_rays(scene.camera, self.frame)
        hits = Hits(len(d))
        cast_room(hits, o, d, scene)
        cam, s = scene.camera, self.frame
        for box in scene.boxes:
            cast_box(hits, o, d, box.lo, box.hi, box.material, screen_rays(box_corners(box.lo, box.hi), cam, s))
        for cyl in scene.cylinders:
            (cx, cz), r = cyl.centre, cyl.radius
            rays = screen_rays(box_corners((cx - r, cyl.y0, cz - r), (cx + r, cyl.y1, cz + r)), cam, s)
            cast_cylinder(hits, o, d, cyl, rays)
        p = o + hits.t[:, None] * d
        colour = sample_bilinear(self.bank, hits.layer, hits.uv / hits.tile[:, None]) * hits.tint
        rgb = colour * shade(scene, p, hits.normal)[:, None]
        rgb = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(*self.frame, 3)
        return rgb, hits.t.astype(np.float32).reshape(self.frame)

    def close(self) -> None:
        pass
