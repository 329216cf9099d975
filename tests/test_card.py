"""The dataset card and previews: every section, every picture, and the depth source told honestly."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from fgbg import codecs
from fgbg.inspect.card import SECTIONS, card_markdown, demo_attribution, depth_sentence, write_card
from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.errors import CorruptStore
from fgbg.make.generate import generate
from fgbg.inspect.preview import (
    PAD,
    PREVIEW_KINDS,
    TURBO,
    depth_panel,
    grey_rgb,
    grid,
    occluded_indices,
    occluded_rows,
    preview,
    rooms_rows,
    turbo,
)
from fgbg.rooms import render_rooms
from fgbg.store.read import StoreReader
from fgbg.inspect.stats import write_stats
from fgbg.store import read_dataset_json
from fgbg.inspect.verify import verify

from .conftest import SMALL


@pytest.fixture
def store(folders, tmp_path):
    out = tmp_path / "store"
    generate(*folders, out, GenerateConfig(**SMALL), workers=0, progress=False)
    return out


def test_card_has_every_section_and_its_images_open(store):
    path = write_card(store, workers=0)
    text = path.read_text()
    assert path == store / "README.md"
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    # kinds table, counts, size, mean/std of every kind
    for kind in ("bg", "fg", "fg_mask", "fg_bg", "mask", "depth"):
        assert f"| `{kind}` |" in text
    assert "3 x 3 x 2 x 2 = **36**" in text
    assert re.search(r"\*\*[\d.]+ kB\*\* on disk", text)
    assert "Normalize(mean=[" in text
    # a picture for each kind and the aligned rows, each a real PNG
    images = re.findall(r"!\[(\w+)\]\((previews/\w+\.png)\)", text)
    assert [kind for kind, _ in images] == list(PREVIEW_KINDS)
    for _, rel in images:
        with Image.open(store / rel) as im:
            im.load()
            assert im.mode == "RGB" and im.width > 32 and im.height > 32
    # how it was made, honestly; how to load it; licence
    assert "ground-plane prior" in text and "No depth network (not DenseDepth" in text
    assert "mirror image" in text and "seed 0" in text
    assert 'wds.WebDataset("shards/shard-{000000..000005}.tar", shardshuffle=False)' in text and "iter_samples" in text
    # the sources are bundled demo images: their attribution rows, and only theirs
    licence = text[text.index("## Licence and attribution") :]
    meta = read_dataset_json(store)
    used = [s["file"] for s in meta["sources"]["bg"] + meta["sources"]["fg"]]
    rows = re.findall(r"^\| (\S+\.(?:jpg|png)) \|", licence, flags=re.M)
    assert sorted(rows) == sorted(used)
    # the card and its files do not make the store look corrupt
    assert verify(store, workers=0).ok


def test_card_says_licence_unknown_for_sources_it_does_not_know(store):
    meta = read_dataset_json(store)
    assert demo_attribution(meta) is not None
    meta["sources"]["fg"][0]["sha256"] = "0" * 64  # a file that is not one of the bundled demo images
    assert demo_attribution(meta) is None
    stats = write_stats(store, workers=0)
    text = card_markdown(meta, stats, {}, None, "mine")
    assert "**Unknown.**" in text[text.index("## Licence and attribution") :]


def test_card_includes_a_given_attribution_file(store, tmp_path):
    notes = tmp_path / "ATTRIBUTION.md"
    notes.write_text("# Sources\n\n- office.jpg: CC0, by A. Person\n")
    text = write_card(store, attribution=notes, workers=0).read_text()
    licence = text[text.index("## Licence and attribution") :]
    assert "office.jpg: CC0, by A. Person" in licence and "### Sources" in licence
    with pytest.raises(FileNotFoundError, match="not found"):
        write_card(store, attribution=tmp_path / "nope.md", workers=0)


def test_depth_sentence_never_claims_a_network_for_layered_depth():
    meta_depth = {"source": "layered", "bg_maps": {"ground-plane prior": 2, "sidecar": 1}, "horizon": 0.4,
                  "scale": "inverse depth", "near": "bright"}  # fmt: skip
    sentence = depth_sentence(meta_depth)
    assert "not estimated" in sentence and "2 background(s)" in sentence and "supplied beside the photo" in sentence
    estimated = depth_sentence({"source": "estimator", "depth_model": "midas.onnx", "per_image_minmax": True})
    assert "midas.onnx" in estimated and "not comparable between images" in estimated


@pytest.mark.parametrize("fmt", ["folder", "zip"])
def test_previews_of_every_kind_in_other_formats(folders, tmp_path, fmt):
    out = tmp_path / fmt
    generate(*folders, out, GenerateConfig(**{**SMALL, "format": fmt}), workers=0, progress=False)
    for kind in PREVIEW_KINDS:
        img = preview(out, kind, 5)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_depth_preview_shows_grey_beside_turbo(folders, tmp_path):
    out = tmp_path / "deep"
    generate(*folders, out, GenerateConfig(**{**SMALL, "depth_bits": 16}), workers=0, progress=False)
    img = preview(out, "depth", 3, cols=3)
    assert img.shape[1] == 4 + 3 * (2 * 64 + 4 + 4)  # three double-wide cells
    depth = np.array([[0, 65535]], np.uint16)
    panel = depth_panel(depth)
    assert panel.shape == (1, 2 * 2 + 4, 3)
    assert panel[0, 0].tolist() == [0, 0, 0] and panel[0, 1].tolist() == [255, 255, 255]
    assert (panel[0, -2:] == TURBO[[0, 255]]).all()


def test_turbo_goes_from_blue_to_red():
    lo, mid, hi = turbo(np.array([[0.05, 0.5, 0.95]]))[0].astype(int)
    assert lo[2] > lo[0] and mid[1] > max(mid[0], mid[2]) - 40 and hi[0] > hi[2]
    assert TURBO.shape == (256, 3) and TURBO.dtype == np.uint8


def test_grid_centres_images_of_different_sizes():
    page = grid([np.zeros((4, 6, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)], cols=2, pad=1)
    assert page.shape == (6, 15, 3)
    assert page[2:4, 10:12].max() == 0 and (page[1, 10] == 255).all() and (page[1:5, 1:7] == 0).all()


def test_cli_show_and_card(store, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["show", str(store), "--kind", "fg_bg", "--n", "6", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (4 + 6 * 68, 4 + 68)  # 6 cells of 64 px in one row (8 per row max)
    with pytest.raises(SystemExit):
        main(["show", str(store), "--kind", "nope"])
    assert main(["card", str(store), "--workers", "0", "--quiet"]) == 0
    assert "README.md" in capsys.readouterr().out
    assert read_dataset_json(store)["counts"]["samples"] == 36
    code = main(["show", str(store), "--n", "0", "--out", str(out)])
    assert code == 2 and "--n must be at least 1, got 0" in capsys.readouterr().err


def test_a_truncated_png_stops_card_and_show_with_one_line_naming_it(folders, tmp_path, capsys):
    store = tmp_path / "folder"
    generate(*folders, store, GenerateConfig(**{**SMALL, "format": "folder"}), workers=0, progress=False)
    for kind in ("mask", "depth"):
        path = store / kind / "b000" / "b000_f001_0_01.png"
        path.write_bytes(path.read_bytes()[:30])
    depth = store / "depth" / "b000" / "b000_f001_0_01.png"
    with pytest.raises(CorruptStore, match=f"^{depth}: does not decode .*run `fgbg verify {store}`"):
        preview(store, "depth", 36)  # every sample: the damaged one among them
    for argv in (["show", str(store), "--kind", "aligned", "--n", "36", "--out", str(tmp_path / "a.png")],
                 ["card", str(store), "--workers", "0", "--quiet"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert re.fullmatch(rf"fgbg {argv[0]}: error: {store}/(mask|depth)/b000/b000_f001_0_01\.png: does not decode .*", err)
    assert not (tmp_path / "a.png").exists() and not (store / "README.md").exists()


def test_card_takes_the_store_lock(store):
    from fgbg.errors import StoreBusy
    from fgbg.store.lock import store_lock

    with store_lock(store, "generate"):
        with pytest.raises(StoreBusy, match="fgbg generate"):
            write_card(store, workers=0)
    assert not (store / "README.md").exists() and not (store / "previews").exists()


def test_card_of_a_rooms_store_shows_rooms_with_depth_and_hidden_foregrounds(folders, tmp_path):
    render_rooms(tmp_path / "rooms", 3, 96, seed=1, progress=False, workers=0)
    out = tmp_path / "store"
    config = GenerateConfig(**{**SMALL, "placements": 6, "fg_size": 40, "perspective": True, "scale_min": 0.5})
    generate(tmp_path / "rooms", folders[1], out, config, workers=0, progress=False)
    text = write_card(out, workers=0).read_text()
    for kind in ("rooms", "occluded"):
        assert f"![{kind}](previews/{kind}.png)" in text
        with Image.open(out / "previews" / f"{kind}.png") as im:
            assert im.mode == "RGB" and im.width > 128
    assert "the paste is depth-aware" in text and "redrawn from the same seeded generator" in text
    reader = StoreReader(out)
    anns = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    hidden = occluded_indices(reader)
    assert hidden and hidden == [i for i, a in enumerate(anns) if a["visible"] < 1]
    # the cells are what the store holds: row 0 of each picture, after the 16 px header
    y, cell = 16 + PAD, 64
    page = occluded_rows(reader, n=len(hidden))
    mask = codecs.decode_png(reader.read(hidden[0])["mask.png"])
    np.testing.assert_array_equal(page[y : y + cell, PAD + 2 * (cell + PAD) :][:, :cell], grey_rgb(mask))
    rooms = rooms_rows(reader, n=3)
    depth = codecs.decode_png(reader.read_asset("bg_depth", 0))
    np.testing.assert_array_equal(rooms[y : y + cell, PAD + cell + PAD :][:, :cell], turbo(depth / 65535))


def test_card_of_a_prior_store_shows_no_room_pictures(store):
    text = write_card(store, workers=0).read_text()
    assert "previews/rooms.png" not in text and "previews/occluded.png" not in text and "depth-aware" not in text
