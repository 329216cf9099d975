"""Issue 25, item 1: fgbg deletes or replaces only what it wrote. For every verb that deletes or
overwrites, a real user folder holding a precious file given by mistake is refused in one line
naming it, exit 2, and every file stays as it was; what fgbg wrote is still replaced.
(The export's own case is in test_exports.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fgbg.cli import main

from .conftest import SMALL, make_store

THESIS = "\\chapter{years of work}"
GENERATE_SMALL = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def refused(capsys, argv: list, named: Path | str) -> None:
    """``fgbg ARGV`` exits 2 with one line that names ``named``."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(named) in err[0] and "Traceback" not in err[0], err


@pytest.fixture
def store(folders, tmp_path) -> Path:
    return make_store(folders, tmp_path / "store")


def test_generate_overwrite_never_deletes_a_folder_with_another_tools_dataset_json(folders, tmp_path, capsys):
    precious = tmp_path / "precious"
    (precious / "src").mkdir(parents=True)
    (precious / "src" / "thesis.tex").write_text(THESIS)
    (precious / "dataset.json").write_text(json.dumps({"name": "my survey", "license": "cc-by"}))  # e.g. another tool's
    (precious / "README.md").write_text("# my survey\n")
    before = files(precious)
    bg, fg = folders
    for overwrite in ([], ["--overwrite"]):
        refused(capsys, ["generate", "--bg", bg, "--fg", fg, "--out", precious, *GENERATE_SMALL, "--workers", "0", "--quiet", *overwrite], precious)
        assert files(precious) == before


def test_generate_overwrite_keeps_a_readme_of_the_users_in_a_store_and_replaces_a_card(store, folders, tmp_path, capsys):
    bg, fg = folders
    other = ["generate", "--bg", bg, "--fg", fg, "--out", store, *GENERATE_SMALL, "--seed", "1", "--workers", "0", "--quiet", "--overwrite"]
    (store / "README.md").write_text("# my own notes on this store\n")
    before = files(store)
    refused(capsys, other, store / "README.md")
    assert files(store) == before
    (store / "README.md").unlink()
    assert main(["card", str(store), "--workers", "0", "--quiet"]) == 0  # a card in its place: fgbg's, replaced
    assert main([str(a) for a in other]) == 0 and json.loads((store / "dataset.json").read_text())["config"]["seed"] == 1


def test_card_and_stats_never_overwrite_a_readme_or_stats_json_fgbg_did_not_write(store, capsys):
    (store / "README.md").write_text(THESIS)
    refused(capsys, ["card", store, "--workers", "0", "--quiet"], store / "README.md")
    assert (store / "README.md").read_text() == THESIS and not (store / "previews").exists()
    (store / "README.md").unlink()
    (store / "stats.json").write_text(json.dumps({"mine": 1}))
    refused(capsys, ["stats", store, "--workers", "0", "--quiet"], store / "stats.json")
    refused(capsys, ["card", store, "--workers", "0", "--quiet"], store / "stats.json")
    assert json.loads((store / "stats.json").read_text()) == {"mine": 1} and not (store / "README.md").exists()
    (store / "stats.json").unlink()
    assert main(["card", str(store), "--workers", "0", "--quiet"]) == 0
    assert main(["card", str(store), "--workers", "0", "--quiet"]) == 0  # its own card and stats: rewritten
    assert main(["stats", str(store), "--workers", "0", "--quiet"]) == 0


def test_depth_maps_overwrite_replaces_only_the_sidecars_it_wrote(folders, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fgbg.depth.testing import tiny_onnx_depth

    model = tiny_onnx_depth(tmp_path / "depth.onnx")
    bg = folders[0]
    first = sorted(bg.glob("*.jpg"))[0]
    sensor = first.with_name(first.stem + ".depth.png")
    sensor.write_bytes(b"a depth camera's map, not fgbg's")
    argv = ["depth-maps", bg, "--model", model, "--device", "cpu", "--quiet"]
    assert main([str(a) for a in argv]) == 0  # without --overwrite the camera's map is kept, the others written
    ours = {p.name: p.read_bytes() for p in bg.glob("*.depth.png") if p != sensor}
    assert len(ours) == 2 and sensor.read_bytes() == b"a depth camera's map, not fgbg's"
    capsys.readouterr()
    refused(capsys, [*argv, "--overwrite"], sensor)
    assert sensor.read_bytes() == b"a depth camera's map, not fgbg's"
    sensor.unlink()
    assert main([str(a) for a in [*argv, "--overwrite"]]) == 0  # all of them fgbg's now: replaced
    assert {p.name: p.read_bytes() for p in bg.glob("*.depth.png") if p != sensor} == ours


def test_cutout_never_replaces_a_photo_it_did_not_write(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fgbg.depth.testing import tiny_u2net
    from fgbg.make.assets import demo_assets

    model = tiny_u2net(tmp_path / "u2netp.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    source = sorted(demo_assets()[1].glob("*.png"))[0]
    (photos / "holiday.png").write_bytes(source.read_bytes())
    before = files(photos)
    refused(capsys, ["cutout", photos, "--out", photos, "--model", model, "--device", "cpu", "--quiet"], photos / "holiday.png")
    assert files(photos) == before  # the photo would have become its own cut-out
    out = tmp_path / "cut"
    for _ in range(2):  # a rerun replaces its own cut-outs
        assert main(["cutout", str(photos), "--out", str(out), "--model", str(model), "--device", "cpu", "--quiet"]) == 0
    assert (out / "holiday.png").is_file() and (out / "masks" / "holiday.png").is_file()


def test_rooms_never_overwrite_files_fgbg_rooms_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "room_000000.jpg").write_bytes(b"my photo of my room")
    (mine / "rooms.json").write_text(json.dumps({"my": "notes"}))
    before = files(mine)
    refused(capsys, ["rooms", "--out", mine, "--count", "1", "--size", "32", "--renderer", "numpy", "--workers", "0", "--quiet"], mine / "rooms.json")
    assert files(mine) == before
    (mine / "rooms.json").unlink()
    refused(capsys, ["rooms", "--out", mine, "--count", "1", "--size", "32", "--renderer", "numpy", "--workers", "0", "--quiet"], mine / "room_000000.jpg")
    assert (mine / "room_000000.jpg").read_bytes() == b"my photo of my room"
    rooms = tmp_path / "rooms"
    for count in (1, 2):  # its own folder: resumed and extended
        assert main(["rooms", "--out", str(rooms), "--count", str(count), "--size", "32", "--renderer", "numpy", "--workers", "0", "--quiet"]) == 0
    assert len(list(rooms.glob("room_*.jpg"))) == 2
