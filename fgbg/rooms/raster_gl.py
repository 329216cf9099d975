"""The real renderer: OpenGL 3.3 through moderngl in a headless EGL context.

No display is needed: on a machine without a GPU, Mesa's llvmpipe rasterises on the CPU;
with a GPU and its EGL driver, the GPU does. Depth comes from the depth buffer (24-bit,
linear in inverse depth between the near and far planes) and is turned back into planar
metric depth. Install with ``pip install 'fgbg[rooms]'`` (moderngl).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fgbg.errors import UserError
from fgbg.rooms.scene import LIGHT_FALLOFF_M, Cylinder, Material, Scene, frame_hw, half_extents, planar_uv

NAME = "egl"
NEAR_M, FAR_M = 0.05, 50.0
CYLINDER_SEGMENTS = 48  # at least; more for wide ones (CHORD_ERROR_M)
CHORD_ERROR_M = 0.0003
MAX_LIGHTS = 2
INSTALL = "pip install 'fgbg[rooms]' (moderngl) and an EGL driver (Mesa's libegl1 on Linux; a GPU's own driver)"

VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
in vec3 in_pos; in vec3 in_normal; in vec2 in_uv; in float in_layer; in vec3 in_tint;
out vec3 v_pos; out vec3 v_normal; out vec2 v_uv; flat out float v_layer; out vec3 v_tint;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
    v_pos = in_pos; v_normal = in_normal; v_uv = in_uv; v_layer = in_layer; v_tint = in_tint;
}
"""

FRAGMENT_SHADER = f"""
#version 330
uniform sampler2DArray bank;
uniform float ambient;
uniform int n_lights;
uniform vec4 lights[{MAX_LIGHTS}];      // xyz: position (w = 1) or direction of travel (w = 0)
uniform float intensity[{MAX_LIGHTS}];
in vec3 v_pos; in vec3 v_normal; in vec2 v_uv; flat in float v_layer; in vec3 v_tint;
out vec4 f_color;
void main() {{
    vec3 n = normalize(v_normal);
    float light = ambient;
    for (int i = 0; i < n_lights; ++i) {{
        if (lights[i].w > 0.5) {{
            vec3 to = lights[i].xyz - v_pos;
            float r = length(to);
            light += intensity[i] * max(dot(n, to / max(r, 1e-9)), 0.0) / (1.0 + (r / {LIGHT_FALLOFF_M:.6f}) * (r / {LIGHT_FALLOFF_M:.6f}));
        }} else {{
            light += intensity[i] * max(dot(n, -lights[i].xyz), 0.0);
        }}
    }}
    vec3 colour = texture(bank, vec3(v_uv, v_layer)).rgb * v_tint * light;
    f_color = vec4(clamp(colour, 0.0, 1.0), 1.0);
}}
"""

FLOATS_PER_VERTEX = 12  # position 3, normal 3, uv 2, layer 1, tint 3
ATTRIBUTES = ("3f 3f 2f 1f 3f", "in_pos", "in_normal", "in_uv", "in_layer", "in_tint")


# The unit cube's faces: for axis a and side (0 = lo, 1 = hi), four corners in order around the face.
_QUAD = ((0, 0), (1, 0), (1, 1), (0, 1))
_TRIANGLES = np.array([0, 1, 2, 0, 2, 3])


def _cube_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corners (6, 4, 3) on [0, 1], outward normals (6, 3), face axis (6,)), faces ordered x-lo, x-hi, y-lo ... z-hi."""
    corners, normals, axes = [], [], []
    for axis in range(3):
        u, v = [k for k in range(3) if k != axis]
        for side in (0, 1):
            quad = np.zeros((4, 3))
            quad[:, axis] = side
            quad[:, u], quad[:, v] = zip(*_QUAD)
            normal = np.zeros(3)
            normal[axis] = 1.0 if side else -1.0
            corners.append(quad), normals.append(normal), axes.append(axis)
    return np.array(corners), np.array(normals), np.array(axes)


CUBE_CORNERS, CUBE_NORMALS, CUBE_AXES = _cube_faces()


def _material_columns(materials: list[Material]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([m.layer for m in materials], np.float64), np.array([m.tint for m in materials], np.float64),
            np.array([m.tile_m for m in materials], np.float64))  # fmt: skip


def box_vertices(lo: np.ndarray, hi: np.ndarray, materials: list[Material], inward: bool = False) -> np.ndarray:
    """Triangles of the six faces of B boxes ``lo``, ``hi`` (B, 3): (B * 36, FLOATS_PER_VERTEX).

    ``materials``: one per box, or (``inward``, the room) six, one per face in CUBE order; an
    inward box has its normals pointing into it."""
    lo, hi = np.asarray(lo, np.float64).reshape(-1, 3), np.asarray(hi, np.float64).reshape(-1, 3)
    n = len(lo)
    p = lo[:, None, None, :] + CUBE_CORNERS[None] * (hi - lo)[:, None, None, :]  # (B, 6, 4, 3)
    p = p[:, :, _TRIANGLES]  # (B, 6, 6, 3)
    normal = np.broadcast_to((-1.0 if inward else 1.0) * CUBE_NORMALS[None, :, None, :], p.shape)
    layer, tint, tile = _material_columns(materials)
    shape = (n, 1, 1) if len(materials) == n else (1, 6, 1)  # per box, or per face of the one room
    layer, tile = layer.reshape(shape), tile.reshape(shape)
    tint = tint.reshape(*shape, 3)
    uv = planar_uv(p, CUBE_AXES[None, :, None]) / tile[..., None]
    cols = [p, normal, uv, np.broadcast_to(layer, p.shape[:3])[..., None], np.broadcast_to(tint, p.shape)]
    return np.concatenate(cols, axis=-1).reshape(-1, FLOATS_PER_VERTEX)


def cylinder_segments(radius: float) -> int:
    """Sides of the polygon standing for a cylinder: the chord is never more than 0.3 mm inside the circle."""
    return int(np.clip(math.ceil(math.pi / math.acos(1 - CHORD_ERROR_M / radius)), CYLINDER_SEGMENTS, 4 * CYLINDER_SEGMENTS))


@functools.cache
def unit_cylinder(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cylinder of radius 1 from y = 0 to 1 as a k-sided polygon: (positions (n, 3), normals
    (n, 3), angle around the axis (n,), whether on the side (n,)), n = 12 k, as triangles."""
    a = 2 * np.pi * np.arange(k + 1) / k
    a0, a1 = a[:-1], a[1:]
    angle = np.stack([a0, a1, a1, a0], axis=1)[:, _TRIANGLES].ravel()  # side quads -> two triangles each
    height = np.tile(np.array([0.0, 0.0, 1.0, 1.0])[_TRIANGLES], k)
    side = np.stack([np.cos(angle), height, np.sin(angle)], axis=1)
    side_normal = side * [1.0, 0.0, 1.0]
    caps, cap_normals = [], []
    for y in (1.0, 0.0):
        fan_angle = np.stack([a0, a0, a1], axis=1)
        fan = np.stack([np.cos(fan_angle), np.full_like(fan_angle, y), np.sin(fan_angle)], axis=-1)
        fan[:, 0, [0, 2]] = 0.0  # the centre
        caps.append(fan.reshape(-1, 3))
        cap_normals.append(np.broadcast_to([0.0, 1.0 if y else -1.0, 0.0], (3 * k, 3)))
    positions = np.concatenate([side, *caps])
    on_side = np.arange(len(positions)) < len(side)
    return positions, np.concatenate([side_normal, *cap_normals]), np.concatenate([angle, np.zeros(6 * k)]), on_side


def cylinder_vertices(cyl: Cylinder) -> np.ndarray:
    """Triangles of the side (smooth radial normals) and both caps of an upright cylinder."""
    (cx, cz), r, m = cyl.centre, cyl.radius, cyl.material
    unit, normal, angle, on_side = unit_cylinder(cylinder_segments(r))
    p = unit * [r, cyl.y1 - cyl.y0, r] + [cx, cyl.y0, cz]
    uv = np.where(on_side[:, None], np.stack([angle * r, p[:, 1]], axis=1), p[:, [0, 2]])
    return np.concatenate([p, normal, uv / m.tile_m, np.full((len(p), 1), m.layer), np.broadcast_to(m.tint, p.shape)], axis=1)


def facing_normals(vertices: np.ndarray) -> np.ndarray:
    """The triangles of ``vertices`` (3 T, FLOATS_PER_VERTEX) wound counter-clockwise seen from the side
    their normals point to, so that back-face culling drops exactly the faces turned away."""
    tri = vertices.reshape(-1, 3, vertices.shape[1])
    p = tri[:, :, :3]
    turn = np.einsum("ij,ij->i", np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), tri[:, :, 3:6].sum(axis=1))
    tri[turn < 0] = tri[turn < 0][:, [0, 2, 1]]
    return tri.reshape(vertices.shape)


def scene_vertices(scene: Scene) -> np.ndarray:
    """float32 (3 * triangles, FLOATS_PER_VERTEX): the room, its boxes and cylinders."""
    # Furniture first, the room last: the room's fragments behind furniture then fail the early
    # depth test instead of being shaded and overdrawn (the image is the same either way).
    parts = [cylinder_vertices(c) for c in scene.cylinders]
    if scene.boxes:
        parts.append(box_vertices([b.lo for b in scene.boxes], [b.hi for b in scene.boxes], [b.material for b in scene.boxes]))
    room = [scene.walls[0], scene.walls[1], scene.floor, scene.ceiling, scene.walls[2], scene.walls[3]]
    parts.append(box_vertices(np.zeros(3), np.asarray(scene.size), room, inward=True))
    return facing_normals(np.concatenate(parts)).astype(np.float32)


def view_projection(scene: Scene, frame: int | tuple[int, int] = 1) -> np.ndarray:
    """float64 (4, 4): world -> clip space (OpenGL conventions, the camera looking down -z) of an
    image of ``frame`` (H, W) (or S: S x S), the camera's ``fov`` spanning its shorter side."""
    cam = scene.camera
    forward, right, up = cam.basis()
    view = np.eye(4)
    view[:3, :3] = np.stack([right, up, -forward])
    view[:3, 3] = -view[:3, :3] @ np.asarray(cam.position)
    f = 1.0 / math.tan(cam.fov / 2)
    reach_x, reach_y = half_extents(frame)
    proj = np.array([
        [f / reach_x, 0, 0, 0],
        [0, f / reach_y, 0, 0],
        [0, 0, -(FAR_M + NEAR_M) / (FAR_M - NEAR_M), -2 * FAR_M * NEAR_M / (FAR_M - NEAR_M)],
        [0, 0, -1, 0],
    ])  # fmt: skip
    return proj @ view


def window_depth_to_metres(depth: np.ndarray) -> np.ndarray:
    """Depth-buffer values (window depth on [0, 1], default depth range) -> planar depth in metres."""
    ndc = 2.0 * depth.astype(np.float64) - 1.0
    return (2.0 * FAR_M * NEAR_M / ((FAR_M + NEAR_M) - ndc * (FAR_M - NEAR_M))).astype(np.float32)


class RendererUnavailable(UserError):
    """No EGL context can be made here (no moderngl, no EGL library, no driver); ``reason`` says which."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def egl_context():
    """A standalone moderngl context on EGL, or RendererUnavailable with the reason and how to install."""
    try:
        import moderngl
    except ImportError:
        raise RendererUnavailable(f"--renderer egl needs moderngl: {INSTALL}", "moderngl is not installed") from None
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as e:  # noqa: BLE001 (glcontext raises plain Exceptions naming the missing piece)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RendererUnavailable(f"no EGL context could be made ({reason}); install {INSTALL}, or use --renderer numpy", reason) from None


class EGLRenderer:
    """Renders scenes at ``frame`` (H, W) into an off-screen framebuffer.

    Args:
        frame: (H, W) of the images in pixels, or S for S x S.
        bank: uint8 (N, T, T, 3), the set's texture layers (uploaded once, mip-mapped, repeating).
    """

    name = NAME

    def __init__(self, frame: int | tuple[int, int], bank: np.ndarray):
        import moderngl

        self.frame = frame_hw(frame)
        height, width = self.frame
        self.ctx = egl_context()
        self.detail = f"{self.ctx.info['GL_RENDERER']} (OpenGL {self.ctx.info['GL_VERSION']})"
        self.program = self.ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        n, t = bank.shape[0], bank.shape[1]
        self.bank = self.ctx.texture_array((t, t, n), 3, np.ascontiguousarray(bank).tobytes())
        self.bank.build_mipmaps()
        self.bank.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self.bank.repeat_x = self.bank.repeat_y = True
        self.fbo = self.ctx.framebuffer(
            color_attachments=[self.ctx.renderbuffer((width, height), 4)], depth_attachment=self.ctx.depth_renderbuffer((width, height))
        )
        self.vbo = self.ctx.buffer(reserve=1 << 16, dynamic=True)
        self.vao = self.ctx.vertex_array(self.program, [(self.vbo, *ATTRIBUTES)])

    def render(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (H, W, 3) RGB, float32 (H, W) planar depth in metres), rows from the top."""
        verts = scene_vertices(scene)
        if verts.nbytes > self.vbo.size:
            self.vbo.orphan(verts.nbytes * 2)
        self.vbo.write(verts)
        self._set_uniforms(scene)
        self.fbo.use()
        self.ctx.enable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)  # the camera never sees a back face
        # The camera frame (right, up, forward) is left-handed (yaw 0: +x right, +z ahead), so the
        # view transform mirrors, and a face counter-clockwise seen from outside is clockwise on screen.
        self.ctx.front_face = "cw"
        self.fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self.bank.use(0)
        self.vao.render(vertices=len(verts))
        height, width = self.frame
        rgb = np.frombuffer(self.fbo.read(components=3), np.uint8).reshape(height, width, 3)[::-1]
        depth = np.frombuffer(self.fbo.read(components=1, attachment=-1, dtype="f4"), np.float32).reshape(height, width)[::-1]
        return np.ascontiguousarray(rgb), window_depth_to_metres(depth)

    def _set_uniforms(self, scene: Scene) -> None:
        self.program["mvp"].write(view_projection(scene, self.frame).T.astype("f4").tobytes())
        self.program["ambient"].value = scene.ambient
        if "n_lights" in self.program:
            self.program["n_lights"].value = len(scene.lights)
        lights = np.zeros((MAX_LIGHTS, 4), np.float32)
        power = np.zeros(MAX_LIGHTS, np.float32)
        for i, lamp in enumerate(scene.lights[:MAX_LIGHTS]):
            lights[i] = (*lamp.position, 1.0) if lamp.position is not None else (*lamp.direction, 0.0)
            power[i] = lamp.intensity
        self.program["lights"].write(lights.tobytes())
        self.program["intensity"].write(power.tobytes())
        if "bank" in self.program:
            self.program["bank"].value = 0

    def close(self) -> None:
        self.ctx.release()
