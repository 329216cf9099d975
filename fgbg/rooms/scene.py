"""The description of one rendered room: pure data, drawn from a generator seeded by (seed, index).

World frame: metres, y up, the floor at y = 0, the room the box [0, W] x [0, H] x [0, D].
A camera looks along ``forward``; its image has x to the right and y down, square, with the
same field of view both ways. Depth is *planar*: the distance along the optical axis (what a
depth buffer and an RGB-D camera give), so a wall facing the camera has one depth everywhere
and a floor seen by a level camera has inverse depth linear in the image row.

Both renderers (:mod:`fgbg.rooms.raster_gl`, :mod:`fgbg.rooms.raycast`) draw exactly this
description; nothing here depends on either of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

Vec3 = tuple[float, float, float]

# Surface kinds: which texture family a surface draws from (see fgbg.rooms.textures).
FLOOR, WALL, CEILING, FURNITURE = "floor", "wall", "ceiling", "furniture"

ROOM_WIDTH_M, ROOM_DEPTH_M, ROOM_HEIGHT_M = (3.0, 8.0), (3.0, 8.0), (2.4, 3.4)
# A handheld or tripod camera at chest to eye height, as indoor RGB-D sets are captured. A single
# image fixes depth only up to the camera's height (a room twice as big seen from twice as high
# looks the same), so this range is the scale prior a model learns: its ratio, 1.33, keeps every
# height within 1.16x of the range's geometric middle, inside delta1's 1.25.
CAMERA_HEIGHT_M = (1.2, 1.6)
CAMERA_PITCH_DEG = (-25.0, 8.0)  # negative looks down
CAMERA_FOV_DEG = (55.0, 65.0)
CAMERA_CLEARANCE_M = 0.5  # from the walls and from every piece of furniture
FURNITURE_COUNT = (2, 6)
LIGHT_FALLOFF_M = 4.0  # a point light's intensity at distance r is scaled by 1 / (1 + (r / LIGHT_FALLOFF_M)**2)
PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class Material:
    """A texture layer of the set's bank, a colour it is multiplied by, metres per texture repeat.

    Texture coordinates are planar, in repeats: a face across axis x uses (z, y) / tile_m, across
    y (x, z) / tile_m, across z (x, y) / tile_m; a cylinder's side (angle * radius, y) / tile_m.
    """

    layer: int
    tint: Vec3
    tile_m: float


@dataclass(frozen=True)
class Box:
    """An axis-aligned box from corner ``lo`` to corner ``hi`` (metres)."""

    lo: Vec3
    hi: Vec3
    material: Material


@dataclass(frozen=True)
class Cylinder:
    """An upright cylinder: axis at (x, z) = ``centre``, from height ``y0`` to ``y1``, closed by two caps."""

    centre: tuple[float, float]
    radius: float
    y0: float
    y1: float
    material: Material


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: position (metres), yaw about y and pitch (radians), square field of view (radians)."""

    position: Vec3
    yaw: float
    pitch: float
    fov: float

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forward, right, up), float64 unit vectors; yaw 0 and pitch 0 look along +z with +x to the right."""
        cy, sy, cp, sp = math.cos(self.yaw), math.sin(self.yaw), math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([sy * cp, sp, cy * cp])
        right = np.array([cy, 0.0, -sy])
        return forward, right, np.cross(forward, right)

    def focal_px(self, frame: int | tuple[int, int]) -> float:
        """The focal length in pixels of an image of ``frame`` (H, W) (or S: S x S); ``fov`` spans its shorter side."""
        return min(frame_hw(frame)) / 2 / math.tan(self.fov / 2)


def frame_hw(frame: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of an image given as (H, W), or as S for S x S."""
    return (frame, frame) if isinstance(frame, int) else (int(frame[0]), int(frame[1]))


def half_extents(frame: int | tuple[int, int]) -> tuple[float, float]:
    """(x, y): how far the image reaches right and up from its centre, in units of tan(fov / 2):
    the shorter side spans the camera's ``fov`` (1.0), the longer one more (square pixels)."""
    height, width = frame_hw(frame)
    short = min(height, width)
    return width / short, height / short


@dataclass(frozen=True)
class Light:
    """A point light (``position``) or, with ``position`` None, a directional one shining along ``direction``.

    A surface with normal n facing the light at unit vector l gets ``intensity * max(n . l, 0)``,
    times the falloff of a point light (LIGHT_FALLOFF_M), on top of the scene's ambient term."""

    intensity: float
    position: Vec3 | None = None
    direction: Vec3 | None = None


@dataclass(frozen=True)
class Scene:
    """One room: its size (W, H, D), the materials of floor, ceiling and the four walls, the furniture,
    the camera, an ambient term and one or two lights (Lambert shading, no shadows)."""

    size: Vec3
    floor: Material
    ceiling: Material
    walls: tuple[Material, Material, Material, Material]  # x = 0, x = W, z = 0, z = D
    boxes: tuple[Box, ...]
    cylinders: tuple[Cylinder, ...]
    camera: Camera
    ambient: float
    lights: tuple[Light, ...]


def planar_uv(p: np.ndarray, axis) -> np.ndarray:
    """(..., 2) texture coordinates in metres of points ``p`` (..., 3) on faces across ``axis`` (0, 1, 2;
    broadcast against p[..., 0]), as :class:`Material` says: across x (z, y), across y (x, z), across z (x, y)."""
    first = np.where(axis == 0, p[..., 2], p[..., 0])
    second = np.where(axis == 1, p[..., 2], p[..., 1])
    return np.stack([first, second], axis=-1)


class MaterialPicker:
    """Draws a material for a surface kind from the layers of a texture bank.

    Args:
        layers: surface kind -> the bank's layers that kind may use (see
            :func:`fgbg.rooms.textures.texture_bank`).
        photos: whether the layers are crops of photos (kept near their own colours) or
            procedural (grey patterns, coloured by a random tint).
    """

    def __init__(self, layers: dict[str, list[int]], photos: dict[str, bool]):
        self.layers, self.photos = layers, photos

    def __call__(self, rng: np.random.Generator, kind: str) -> Material:
        layers = self.layers[kind]
        layer = layers[int(rng.integers(len(layers)))]
        if self.photos[kind]:
            tint = tuple(rng.uniform(0.85, 1.1, 3).tolist())
        else:
            tint = _random_tint(rng, kind)
        tile = {FLOOR: (0.5, 2.0), WALL: (0.8, 3.0), CEILING: (1.0, 3.0), FURNITURE: (0.3, 1.2)}[kind]
        return Material(layer, tint, float(rng.uniform(*tile)))


def _random_tint(rng: np.random.Generator, kind: str) -> Vec3:
    """A muted colour: a random hue at a low saturation, brightest on ceilings."""
    u_hue, u_saturation, u_value = rng.random(3).tolist()
    hue = 2 * math.pi * u_hue
    saturation = u_saturation * (0.35 if kind != CEILING else 0.08)
    lo, hi = {CEILING: (0.85, 1.0), WALL: (0.6, 1.0), FLOOR: (0.45, 0.95), FURNITURE: (0.35, 1.0)}[kind]
    value = lo + (hi - lo) * u_value
    return tuple(value * (1 - saturation + saturation * (0.5 + 0.5 * math.cos(hue - k * 2 * math.pi / 3))) for k in range(3))


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of room ``index`` of the set made with ``seed``: independent of every other room."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def sample_scene(seed: int, index: int, pick: MaterialPicker) -> Scene:
    """Room ``index`` of the set ``seed``: every choice comes from :func:`scene_rng` (seed, index)."""
    rng = scene_rng(seed, index)
    size = (float(rng.uniform(*ROOM_WIDTH_M)), float(rng.uniform(*ROOM_HEIGHT_M)), float(rng.uniform(*ROOM_DEPTH_M)))
    floor, ceiling = pick(rng, FLOOR), pick(rng, CEILING)
    walls = tuple(pick(rng, WALL) for _ in range(4)) if rng.random() < 0.3 else (pick(rng, WALL),) * 4
    camera = _sample_camera(rng, size)
    boxes, cylinders = _sample_furniture(rng, size, camera, pick)
    return Scene(size, floor, ceiling, walls, tuple(boxes), tuple(cylinders), camera, float(rng.uniform(0.25, 0.45)), _sample_lights(rng, size))


RETAKE_SHIFT_M = (0.02, 0.06)  # a handheld retake: the camera a few centimetres away ...
RETAKE_TURN_DEG = 0.8  # ... and turned by less than a degree in yaw and in pitch


def retake_scene(scene: Scene, seed: int, index: int) -> Scene:
    """The room of ``scene`` (room ``index`` of the set ``seed``) seen again from a second camera pose, as a
    second handheld photograph: moved RETAKE_SHIFT_M in a random direction, turned up to RETAKE_TURN_DEG in
    yaw and pitch. Near things move more than far ones in the image (parallax), which no 2D shift imitates.
    Seeded by (seed, index) apart from the room's own draws."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    direction = rng.normal(size=3)
    offset = direction / np.linalg.norm(direction) * rng.uniform(*RETAKE_SHIFT_M)
    turn = np.radians(rng.uniform(-RETAKE_TURN_DEG, RETAKE_TURN_DEG, size=2))
    cam = scene.camera
    position = tuple(float(p + o) for p, o in zip(cam.position, offset))
    return replace(scene, camera=replace(cam, position=position, yaw=float(cam.yaw + turn[0]), pitch=float(cam.pitch + turn[1])))


def _sample_camera(rng: np.random.Generator, size: Vec3) -> Camera:
    w, h, d = size
    m = CAMERA_CLEARANCE_M
    x, z = rng.uniform(m, w - m), rng.uniform(m, d - m)
    height = min(rng.uniform(*CAMERA_HEIGHT_M), h - m)
    towards_centre = math.atan2(w / 2 - x, d / 2 - z)  # yaw 0 looks along +z: atan2(dx, dz)
    yaw = towards_centre + rng.uniform(-0.7, 0.7)
    pitch = math.radians(rng.uniform(*CAMERA_PITCH_DEG))
    fov = math.radians(rng.uniform(*CAMERA_FOV_DEG))
    return Camera((float(x), float(height), float(z)), float(yaw), float(pitch), float(fov))


def _sample_lights(rng: np.random.Generator, size: Vec3) -> tuple[Light, ...]:
    w, h, d = size
    lamp = Light(float(rng.uniform(0.5, 0.9)), position=(float(rng.uniform(0.3, w - 0.3)), float(h * rng.uniform(0.6, 0.9)), float(rng.uniform(0.3, d - 0.3))))
    if rng.random() < 0.5:
        return (lamp,)
    down = rng.uniform(0.3, 1.0)
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), -down, math.sin(angle)])
    direction /= np.linalg.norm(direction)
    return lamp, Light(float(rng.uniform(0.15, 0.45)), direction=tuple(float(v) for v in direction))


# ---------------------------------------------------------------- furniture


def _sample_furniture(rng, size: Vec3, camera: Camera, pick: MaterialPicker) -> tuple[list[Box], list[Cylinder]]:
    """A few pieces, mostly in front of the camera, not overlapping each other nor the camera."""
    boxes: list[Box] = []
    cylinders: list[Cylinder] = []
    footprints: list[tuple[float, float, float, float]] = []  # x0, z0, x1, z1
    for _ in range(int(rng.integers(FURNITURE_COUNT[0], FURNITURE_COUNT[1] + 1))):
        kind = PIECE_KINDS[int(rng.integers(len(PIECE_KINDS)))]
        for _ in range(PLACEMENT_TRIES):
            piece = _PIECES[kind](rng, size, camera, pick)
            if piece is not None and _fits(piece[0], footprints, camera, size):
                footprints.append(piece[0])
                boxes += piece[1]
                cylinders += piece[2]
                break
    return boxes, cylinders


def _fits(foot, footprints, camera: Camera, size: Vec3) -> bool:
    x0, z0, x1, z1 = foot
    cx, _, cz = camera.position
    m = CAMERA_CLEARANCE_M
    if x0 < 0 or z0 < 0 or x1 > size[0] or z1 > size[2]:
        return False
    if x0 - m < cx < x1 + m and z0 - m < cz < z1 + m:
        return False
    return all(x1 <= a0 or a1 <= x0 or z1 <= b0 or b1 <= z0 for a0, b0, a1, b1 in footprints)


def _spot_in_view(rng, size: Vec3, camera: Camera) -> tuple[float, float]:
    """A floor point 1-5 m from the camera, within its horizontal field of view, clipped into the room."""
    angle = camera.yaw + rng.uniform(-0.5, 0.5) * camera.fov
    distance = rng.uniform(1.0, 5.0)
    x = camera.position[0] + distance * math.sin(angle)
    z = camera.position[2] + distance * math.cos(angle)
    return _clip(x, 0.1, size[0] - 0.1), _clip(z, 0.1, size[2] - 0.1)


def _clip(value: float, lo: float, hi: float) -> float:
    return float(min(max(value, lo), hi))


def _against_wall(rng, size: Vec3, camera: Camera, width: float, depth: float) -> tuple[tuple[float, float, float, float], str]:
    """(footprint (x0, z0, x1, z1), wall) of a piece ``width`` wide and ``depth`` deep whose back is on
    the wall (x0, x1, z0 or z1) nearest a spot in view."""
    x, z = _spot_in_view(rng, size, camera)
    w, _, d = size
    gaps = {"x0": x, "x1": w - x, "z0": z, "z1": d - z}
    wall = min(gaps, key=gaps.get)
    if wall in ("x0", "x1"):
        z0 = _clip(z - width / 2, 0.0, d - width)
        x0 = 0.0 if wall == "x0" else w - depth
        return (x0, z0, x0 + depth, z0 + width), wall
    x0 = _clip(x - width / 2, 0.0, w - width)
    z0 = 0.0 if wall == "z0" else d - depth
    return (x0, z0, x0 + width, z0 + depth), wall


def _table(rng, size, camera, pick):
    x, z = _spot_in_view(rng, size, camera)
    w, d, h = rng.uniform(0.7, 1.8), rng.uniform(0.5, 1.0), rng.uniform(0.68, 0.78)
    top, leg = rng.uniform(0.03, 0.06), rng.uniform(0.04, 0.07)
    x0, z0, x1, z1 = x - w / 2, z - d / 2, x + w / 2, z + d / 2
    wood, legs = pick(rng, FURNITURE), pick(rng, FURNITURE)
    parts = [Box((x0, h - top, z0), (x1, h, z1), wood)]
    for lx, lz in ((x0, z0), (x1 - leg, z0), (x0, z1 - leg), (x1 - leg, z1 - leg)):
        parts.append(Box((lx, 0.0, lz), (lx + leg, h - top, lz + leg), legs))
    return (x0, z0, x1, z1), _floats(parts), []


def _round_table(rng, size, camera, pick):
    x, z = _spot_in_view(rng, size, camera)
    r, h, top = rng.uniform(0.35, 0.7), rng.uniform(0.68, 0.78), rng.uniform(0.03, 0.06)
    wood = pick(rng, FURNITURE)
    parts = [Cylinder((x, z), r, h - top, h, wood), Cylinder((x, z), rng.uniform(0.04, 0.08), 0.0, h - top, pick(rng, FURNITURE))]
    return (x - r, z - r, x + r, z + r), [], _floats(parts)


def _cabinet(rng, size, camera, pick):
    """A box against a wall, sometimes with a top in another material."""
    width, depth, height = rng.uniform(0.5, 1.6), rng.uniform(0.35, 0.6), rng.uniform(0.6, min(2.0, size[1] - 0.2))
    (x0, z0, x1, z1), _ = _against_wall(rng, size, camera, width, depth)
    parts = [Box((x0, 0.0, z0), (x1, height, z1), pick(rng, FURNITURE))]
    if rng.random() < 0.5:
        parts.append(Box((x0, height, z0), (x1, height + 0.03, z1), pick(rng, FURNITURE)))
    return (x0, z0, x1, z1), _floats(parts), []


def _shelf(rng, size, camera, pick):
    """Two side panels, a back on the wall, and 3-6 shelves between them."""
    width, depth, height = rng.uniform(0.6, 1.4), rng.uniform(0.25, 0.45), rng.uniform(1.0, min(2.2, size[1] - 0.1))
    (x0, z0, x1, z1), wall = _against_wall(rng, size, camera, width, depth)
    t = 0.025
    wood = pick(rng, FURNITURE)
    if wall in ("z0", "z1"):  # sides at x0 and x1, the back along the wall
        parts = [Box((x0, 0.0, z0), (x0 + t, height, z1), wood), Box((x1 - t, 0.0, z0), (x1, height, z1), wood)]
        b0, b1 = (z0, z0 + t) if wall == "z0" else (z1 - t, z1)
        parts.append(Box((x0, 0.0, b0), (x1, height, b1), wood))
    else:
        parts = [Box((x0, 0.0, z0), (x1, height, z0 + t), wood), Box((x0, 0.0, z1 - t), (x1, height, z1), wood)]
        b0, b1 = (x0, x0 + t) if wall == "x0" else (x1 - t, x1)
        parts.append(Box((b0, 0.0, z0), (b1, height, z1), wood))
    for y in np.linspace(0.05, height - t, int(rng.integers(3, 7))):
        parts.append(Box((x0, float(y), z0), (x1, float(y) + t, z1), wood))
    return (x0, z0, x1, z1), _floats(parts), []


def _pillar(rng, size, camera, pick):
    """A bin, a stool or a column: an upright cylinder on the floor."""
    x, z = _spot_in_view(rng, size, camera)
    r = rng.uniform(0.12, 0.35)
    height = rng.uniform(0.4, 1.0) if rng.random() < 0.8 else size[1]
    return (x - r, z - r, x + r, z + r), [], _floats([Cylinder((x, z), r, 0.0, height, pick(rng, FURNITURE))])


def _floats(parts):
    """The parts with plain Python floats (numpy scalars out), so that a scene compares and prints simply."""
    out = []
    for p in parts:
        if isinstance(p, Box):
            out.append(Box(tuple(float(v) for v in p.lo), tuple(float(v) for v in p.hi), p.material))
        else:
            out.append(Cylinder((float(p.centre[0]), float(p.centre[1])), float(p.radius), float(p.y0), float(p.y1), p.material))
    return out


PIECE_KINDS = ("table", "round_table", "cabinet", "shelf", "pillar")
_PIECES = {"table": _table, "round_table": _round_table, "cabinet": _cabinet, "shelf": _shelf, "pillar": _pillar}
