"""``fgbg rooms``: rendered rooms with exact depth, by the EGL renderer and by the numpy fallback.

Where no EGL context can be made, the EGL halves skip with the reason (here, Mesa's llvmpipe
makes one, so they run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fgbg import codecs
from fgbg.cli import main
from fgbg.depth.layered import ground_plane_prior
from fgbg.rooms import raster_gl, raycast
from fgbg.rooms.scene import Camera, Material, Scene, sample_scene
from fgbg.rooms.textures import load_photos, texture_bank
from fgbg.rooms.write import (
    DEPTH_SCALE_M,
    ROOMS_JSON,
    encode_room,
    inverse_depth,
    render_rooms,
)
from tests.conftest import SMALL, demo_folders


def egl_or_skip() -> None:
    try:
        raster_gl.egl_context().release()
    except raster_gl.RendererUnavailable as e:
        pytest.skip(f"no EGL context can be made here, so the EGL renderer cannot run: {e}")


BANK = texture_bank(0)
PLAIN = Material(0, (1.0, 1.0, 1.0), 1.0)


def renderer(kind: str, size: int):
    if kind == "egl":
        egl_or_skip()
        return raster_gl.EGLRenderer(size, BANK.layers)
    return raycast.RaycastRenderer(size, BANK.layers)


def empty_room(size_m, camera: Camera) -> Scene:
    return Scene(size_m, PLAIN, PLAIN, (PLAIN,) * 4, (), (), camera, 0.4, ())


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock" and p.is_file()}


@pytest.mark.parametrize("kind", ["egl", "numpy"])
@pytest.mark.parametrize("distance", [0.8, 5.0])
def test_a_camera_facing_a_wall_sees_its_distance_everywhere(kind, distance):
    # a room far wider and taller than the view: only the wall z = D is seen, `distance` ahead
    camera = Camera((20.0, 20.0, 1.0), yaw=0.0, pitch=0.0, fov=math.radians(60))
    scene = empty_room((40.0, 40.0, 1.0 + distance), camera)
    _, depth_m = renderer(kind, 48).render(scene)
    assert np.abs(inverse_depth(depth_m) - DEPTH_SCALE_M / distance).max() < 1e-3
    # and so does the sidecar as written: png / 65535 = DEPTH_SCALE_M / depth
    png = codecs.decode_png_gray(encode_room(np.zeros((48, 48, 3), np.uint8), depth_m)[1])
    assert np.abs(png / 65535 - DEPTH_SCALE_M / distance).max() < 1e-3


@pytest.mark.parametrize("kind", ["egl", "numpy"])
def test_a_floor_seen_by_a_level_camera_is_the_ground_plane_prior(kind):
    """The layered prior with horizon 0.5 is the floor seen by a level pinhole camera (at any
    height h, any field of view) with its inverse depth scaled to 1 at the bottom row: the
    rendered inverse depth divided by its bottom row's value equals ground_plane_prior(S, 0.5)
    below the horizon. S is odd so that the horizon falls on a row centre, as the prior puts it."""
    size, h, fov = 65, 0.5, math.radians(60)
    camera = Camera((30.0, h, 30.0), yaw=0.0, pitch=0.0, fov=fov)
    _, depth_m = renderer(kind, size).render(empty_room((60.0, 3.0, 60.0), camera))
    v = inverse_depth(depth_m)
    below = slice(size // 2 + 1, size)
    prior = ground_plane_prior(size, 0.5)
    assert np.allclose(v[below] / v[-1, 0], prior[below], rtol=1e-4, atol=1e-5)
    # and in metres: the floor at row r is h * f / (r - horizon) away
    f = camera.focal_px(size)
    rows = np.arange(size)[below] - size // 2
    assert np.allclose(depth_m[below], (h * f / rows)[:, None], rtol=1e-4)


def test_fallback_and_egl_agree_on_the_depth_of_the_same_rooms():
    """Tolerance: on at least 99.5% of the pixels the two inverse depths differ by under 1e-3 of
    the scale, and their median difference is under 1e-5. The rest are silhouette pixels: EGL
    cylinders are polygons (chord <= 0.3 mm) and an edge through a pixel centre may go either way."""
    egl = renderer("egl", 96)
    fallback = renderer("numpy", 96)
    for index in range(4):
        scene = sample_scene(3, index, BANK.picker)
        (rgb_a, za), (rgb_b, zb) = egl.render(scene), fallback.render(scene)
        diff = np.abs(inverse_depth(za) - inverse_depth(zb))
        assert np.mean(diff < 1e-3) >= 0.995, index
        assert np.median(diff) < 1e-5, index
        # the same scene in colour too (texture filtering differs: mip-maps against bilinear)
        assert np.abs(rgb_a.astype(int) - rgb_b).mean() < 8, index


def facing_up(scene: Scene, size: int) -> np.ndarray:
    """bool (S, S): where the nearest surface faces up (floor, table tops), from the ray caster's own hits."""
    o = np.asarray(scene.camera.position, dtype=np.float64)
    d = raycast.pixel_rays(scene.camera, size)
    hits = raycast.Hits(len(d))
    raycast.cast_room(hits, o, d, scene)
    for box in scene.boxes:
        raycast.cast_box(hits, o, d, box.lo, box.hi, box.material)
    for cyl in scene.cylinders:
        raycast.cast_cylinder(hits, o, d, cyl)
    return (hits.normal[:, 1] > 0.99).reshape(size, size)


def test_feet_stand_on_surfaces_that_face_up_as_the_renderer_knows_them():
    """``standable`` reads only the depth map; the renderer knows every pixel's normal. On rendered
    rooms nearly every standable pixel faces up (floor, table tops), and most pixels facing up are
    standable (the misses are rows at the edges of surfaces, where the depth jumps)."""
    from fgbg.depth.layered import standable

    size, right, found, up = 96, 0, 0, 0
    fallback = renderer("numpy", size)
    for index in range(8):
        scene = sample_scene(5, index, BANK.picker)
        feet, truth = standable(inverse_depth(fallback.render(scene)[1])), facing_up(scene, size)
        right, found, up = right + (feet & truth).sum(), found + feet.sum(), up + truth.sum()
    assert right / found >= 0.99 and right / up >= 0.9, (right / found, right / up)


def test_rooms_have_walls_furniture_and_shading_that_differ_between_rooms():
    fallback = renderer("numpy", 64)
    scenes = [sample_scene(0, i, BANK.picker) for i in range(6)]
    assert all(s.boxes or s.cylinders for s in scenes)
    assert len({s.size for s in scenes}) == 6 and len({s.camera for s in scenes}) == 6
    rgb, depth = fallback.render(scenes[0])
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500  # textured and shaded, not flat colours
    assert depth.min() > 0.3 and np.isfinite(depth).all()  # the camera stands clear of everything


@pytest.mark.parametrize("kind", ["egl", "numpy"])
def test_the_same_command_gives_byte_identical_files_and_a_rerun_resumes(kind, tmp_path):
    if kind == "egl":
        egl_or_skip()
    args = ["rooms", "--count", "3", "--size", "48", "--renderer", kind, "--quiet", "--seed", "7"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = folder_bytes(tmp_path / "a")
    assert len(a) == 7 and a == folder_bytes(tmp_path / "b")
    # a killed run: one room missing, one with its depth map only -> the rerun redoes exactly those
    (tmp_path / "b" / "room_000001.jpg").unlink()
    (tmp_path / "b" / "room_000002.jpg").unlink()
    (tmp_path / "b" / "room_000002.depth.png").unlink()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert folder_bytes(tmp_path / "b") == a
    # more rooms later: the first ones are kept as they are
    assert main([*args[:2], "5", *args[3:], "--out", str(tmp_path / "a")]) == 0
    more = folder_bytes(tmp_path / "a")
    assert len(more) == 11 and all(more[k] == v for k, v in a.items() if k != ROOMS_JSON)
    description = json.loads(a[ROOMS_JSON])
    assert description["renderer"] == kind and description["depth"]["scale_m"] == DEPTH_SCALE_M


def test_worker_processes_write_the_same_files_as_one_process(tmp_path, monkeypatch):
    from fgbg.rooms import write

    monkeypatch.setattr(write, "ROOMS_PER_TASK", 2)  # 5 rooms -> 3 tasks over 2 spawned workers
    render_rooms(tmp_path / "here", 5, 40, seed=2, progress=False, workers=0)
    render_rooms(tmp_path / "spread", 5, 40, seed=2, progress=False, workers=2)
    assert folder_bytes(tmp_path / "here") == folder_bytes(tmp_path / "spread")


def test_a_rerun_with_other_settings_is_refused_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["rooms", "--out", out, "--count", "1", "--size", "32", "--renderer", "numpy", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["rooms", "--out", out, "--count", "1", "--size", "32", "--seed", "1", "--renderer", "numpy", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgbg rooms: error: --out") and "seed" in err[0]
    # --renderer auto on a folder begun with numpy goes on with numpy: one set, one renderer
    assert main(["rooms", "--out", out, "--count", "2", "--size", "32", "--quiet"]) == 0
    fresh = str(tmp_path / "fresh")
    assert main(["rooms", "--out", fresh, "--count", "2", "--size", "32", "--renderer", "numpy", "--quiet"]) == 0
    assert folder_bytes(Path(out)) == folder_bytes(Path(fresh))


def test_rooms_feed_generate_end_to_end_and_verify_passes(tmp_path):
    from fgbg.config import GenerateConfig
    from fgbg.inspect.card import depth_sentence
    from fgbg.inspect.verify import verify
    from fgbg.make.generate import generate
    from fgbg.store.layout import read_dataset_json

    rooms = tmp_path / "rooms"
    assert main(["rooms", "--out", str(rooms), "--count", "3", "--size", "64", "--quiet"]) == 0
    _, fg = demo_folders(tmp_path, n_bg=0, n_fg=2)
    store = tmp_path / "store"
    generate(rooms, fg, store, GenerateConfig(**SMALL, depth_bits=16), workers=0, progress=False)
    meta = read_dataset_json(store)
    assert [b["depth"] for b in meta["sources"]["bg"]] == ["sidecar"] * 3
    # dataset.json names what made those sidecars: the rooms' renderer, seed and scale, as rooms.json says
    made = json.loads((rooms / "rooms.json").read_text())
    assert meta["depth"]["sidecars"] == {**{k: made[k] for k in ("generator", "fgbg_version", "renderer", "renderer_detail",
                                         "seed", "size", "count")}, "scale_m": made["depth"]["scale_m"]}  # fmt: skip
    assert meta["depth"]["sidecars"]["generator"] == "fgbg rooms"
    assert f"rooms rendered by `fgbg rooms` with its {made['renderer']} renderer" in depth_sentence(meta["depth"])
    assert [b["file"] for b in meta["sources"]["bg"]] == [f"room_00000{i}.jpg" for i in range(3)]
    # the store's bg depth is the room's depth map, not the ground-plane prior
    room = codecs.decode_png_gray((rooms / "room_000000.depth.png").read_bytes()).astype(int)
    stored = codecs.decode_png(min((store / "assets" / "bg_depth").iterdir()).read_bytes()).astype(int)
    assert np.abs(stored - room).max() <= 1
    report = verify(store, workers=0, progress=False)
    assert report.ok, str(report)


def test_a_broken_rooms_json_is_one_line_naming_it(tmp_path, capsys):
    rooms = tmp_path / "rooms"
    assert main(["rooms", "--out", str(rooms), "--count", "1", "--size", "32", "--renderer", "numpy", "--quiet"]) == 0
    (rooms / "rooms.json").write_text("[1, 2")
    _, fg = demo_folders(tmp_path, n_bg=0, n_fg=1)
    for args in (["generate", "--bg", str(rooms), "--fg", str(fg), "--out", str(tmp_path / "store"), "--size", "32", "--fg-size", "16"],
                 ["rooms", "--out", str(rooms), "--count", "1", "--size", "32", "--renderer", "numpy"]):  # fmt: skip
        assert main([*args, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(rooms / "rooms.json") in err[0] and "cannot be read" in err[0], err


def test_a_bad_textures_folder_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "photo.jpg").write_bytes(b"not a jpeg")
    for folder, words in ((empty, "no images"), (tmp_path / "missing", "not a folder"), (broken, "photo.jpg")):
        assert main(["rooms", "--out", str(tmp_path / "out"), "--count", "1", "--textures", str(folder), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fgbg rooms: error: --textures") and words in err[0], err
    assert not (tmp_path / "out").exists()


def test_photo_textures_are_crops_of_the_photos(tmp_path):
    bg, _ = demo_folders(tmp_path, n_bg=2, n_fg=0)
    out = tmp_path / "out"
    render_rooms(out, 1, 48, textures=bg, renderer="numpy", progress=False)
    recorded = json.loads((out / ROOMS_JSON).read_text())["textures"]
    assert recorded["kind"] == "photos" and [f["file"] for f in recorded["files"]] == sorted(p.name for p in bg.glob("*.jpg"))
    photo_bank = texture_bank(0, *load_photos(bg))
    crops = photo_bank.layers[len(BANK.layers):]
    assert len(crops) > 0
    # a crop tiles seamlessly: it is its own mirror image across both middles
    assert all(np.array_equal(c[:, :64], c[:, 64:][:, ::-1]) and np.array_equal(c[:64], c[64:][::-1]) for c in crops)


def test_without_egl_auto_falls_back_to_numpy_and_egl_says_how_to_install(tmp_path, monkeypatch, capsys):
    import moderngl

    def no_egl(*args, **kwargs):
        raise Exception("libEGL.so.1: cannot open shared object file")  # noqa: TRY002 (as glcontext raises it)

    monkeypatch.setattr(moderngl, "create_standalone_context", no_egl)
    assert main(["rooms", "--out", str(tmp_path / "a"), "--count", "1", "--size", "32", "--quiet"]) == 0
    assert "numpy instead" in capsys.readouterr().err
    assert json.loads((tmp_path / "a" / ROOMS_JSON).read_text())["renderer"] == "numpy"
    assert main(["rooms", "--out", str(tmp_path / "b"), "--count", "1", "--renderer", "egl", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "libEGL.so.1" in err[0] and "pip install 'fgbg[rooms]'" in err[0]


def test_help_says_how_to_install_the_renderer(capsys):
    with pytest.raises(SystemExit):
        main(["rooms", "--help"])
    assert "pip install 'fgbg[rooms]'" in capsys.readouterr().out


def test_retake_renders_each_room_again_from_a_second_pose_that_generate_does_not_take_as_a_bg(tmp_path):
    from fgbg.config import GenerateConfig
    from fgbg.make.generate import generate
    from fgbg.rooms.scene import RETAKE_SHIFT_M, RETAKE_TURN_DEG, retake_scene

    rooms = tmp_path / "rooms"
    args = ["rooms", "--out", str(rooms), "--count", "3", "--size", "48", "--renderer", "numpy", "--quiet", "--seed", "3"]
    assert main([*args, "--retake"]) == 0
    first = {i: codecs.decode_jpeg((rooms / f"room_00000{i}.jpg").read_bytes()).astype(float) for i in range(3)}
    again = {i: codecs.decode_jpeg((rooms / "retake" / f"room_00000{i}.jpg").read_bytes()).astype(float) for i in range(3)}
    for i in range(3):  # the same room, moved a little: nearer the first view than any other room, yet not it
        moved = np.abs(again[i] - first[i]).mean()
        assert 0.5 < moved < min(np.abs(again[i] - first[j]).mean() for j in range(3) if j != i)
        scene = sample_scene(3, i, BANK.picker)
        retaken = retake_scene(scene, 3, i).camera
        step = math.dist(retaken.position, scene.camera.position)
        assert RETAKE_SHIFT_M[0] <= step <= RETAKE_SHIFT_M[1] + 1e-9
        assert max(abs(retaken.yaw - scene.camera.yaw), abs(retaken.pitch - scene.camera.pitch)) <= math.radians(RETAKE_TURN_DEG)
    assert json.loads((rooms / ROOMS_JSON).read_text())["retake"]["folder"] == "retake"
    # without --retake the rooms are the same bytes; a rerun with it adds the missing retakes only
    plain = tmp_path / "plain"
    assert main([*args[:2], str(plain), *args[3:]]) == 0
    assert {k: v for k, v in folder_bytes(plain).items() if k != ROOMS_JSON} == {k: v for k, v in folder_bytes(rooms).items() if k != ROOMS_JSON}
    assert not (plain / "retake").exists()
    assert main([*args[:2], str(plain), *args[3:], "--retake"]) == 0
    assert folder_bytes(plain / "retake") == folder_bytes(rooms / "retake")
    _, fg = demo_folders(tmp_path, n_bg=0, n_fg=1)
    generate(rooms, fg, tmp_path / "store", GenerateConfig(**SMALL), workers=0, progress=False)
    assert json.loads((tmp_path / "store" / "dataset.json").read_text())["counts"]["bg"] == 3
