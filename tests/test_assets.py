import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fgbg.make.assets import (
    BadInput,
    fg_mask,
    key_plain_background,
    load_assets,
    prepare_bg,
    prepare_bg_depth,
    prepare_fg,
    read_image,
)


def white_background_photo(size=(120, 90)) -> np.ndarray:
    """A red disc with a white 'eye' on white, saved and reloaded as JPEG like a real photo."""
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.ellipse((20, 15, 100, 75), fill=(200, 30, 30))
    d.ellipse((55, 35, 65, 45), fill=(255, 255, 255))  # inside the object: must stay opaque
    return img


def test_white_background_is_keyed_with_soft_edges(tmp_path):
    path = tmp_path / "disc.jpg"
    white_background_photo().save(path, quality=90)
    img, _ = read_image(path)
    rgba = prepare_fg(img, 80)
    alpha = rgba[..., 3]
    assert rgba.shape[2] == 4 and max(rgba.shape[:2]) == 80
    # trimmed to the disc: corners of the box are outside the disc -> transparent
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    # the centre, including the white eye, is opaque
    h, w = alpha.shape
    assert alpha[h // 2, w // 2] == 255
    assert ((alpha > 0) & (alpha < 255)).any()  # soft edge
    mask = fg_mask(rgba)
    assert set(np.unique(mask)) == {0, 255}
    area = (mask > 0).mean()
    assert 0.7 < area / (np.pi / 4) < 1.1  # a disc fills pi/4 of its box


def test_busy_background_without_alpha_is_bad_input():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8)
    with pytest.raises(BadInput, match="not plain"):
        key_plain_background(rgb)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"])
def test_backgrounds_of_any_mode_become_rgb(mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257))
    else:
        img = base.convert(mode)
    out = prepare_bg(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode == "I;16":  # scaled from 16 bits, not clipped to white
        assert 60 < out.mean() < 200


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 30), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 30, 30))  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    shown, _ = read_image(tmp_path / "rot.jpg")
    assert shown.size == (30, 60)
    a = np.asarray(shown.convert("L"))
    assert a[:25].mean() > 200 and a[35:].mean() < 50  # the white half is now on top


def test_fg_modes_with_transparency(tmp_path):
    la = Image.new("LA", (20, 30), (0, 0))
    ImageDraw.Draw(la).rectangle((5, 5, 14, 24), fill=(200, 255))
    rgba = prepare_fg(la, 20)
    assert rgba.shape == (20, 10, 4)  # trimmed to 10x20, longest side fitted to 20
    p = Image.new("P", (20, 20), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    ImageDraw.Draw(p).rectangle((2, 2, 9, 9), fill=1)
    p.info["transparency"] = 0
    assert prepare_fg(p, 8).shape == (8, 8, 4)


def test_tiny_backgrounds_are_upscaled_with_a_warning(tmp_path):
    (tmp_path / "bg").mkdir()
    (tmp_path / "fg").mkdir()
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "bg" / "tiny.png")
    Image.new("RGBA", (10, 10), (200, 0, 0, 255)).save(tmp_path / "fg" / "square.png")
    assets = load_assets(tmp_path / "bg", tmp_path / "fg", 64, 16)
    assert assets.bg[0].shape == (64, 64, 3)
    assert any("tiny.png" in w and "upscaled" in w for w in assets.warnings)


def test_depth_sidecars_are_scaled_by_bit_depth_whatever_their_values():
    small = np.arange(0, 256, 16, dtype=np.uint16).reshape(4, 4)  # a 16-bit map whose values are all <= 255
    as_png = Image.fromarray(small)
    assert as_png.mode == "I;16"
    expected = small.astype(np.float32) / 65535
    np.testing.assert_allclose(prepare_bg_depth(as_png, 4, "stretch"), expected, atol=1e-6)
    np.testing.assert_allclose(prepare_bg_depth(small, 4, "stretch"), expected, atol=1e-6)  # a uint16 array
    np.testing.assert_allclose(prepare_bg_depth(Image.fromarray(small.astype(np.int32)), 4, "stretch"), expected, atol=1e-6)
    eight = small.astype(np.uint8)
    np.testing.assert_allclose(prepare_bg_depth(Image.fromarray(eight), 4, "stretch"), eight / 255, atol=1e-6)


def test_a_dark_32_bit_integer_background_stays_dark():
    dark = Image.fromarray(np.full((32, 32), 200, np.int32))  # mode "I", as 16-bit files often open: 200 / 65535
    assert dark.mode == "I"
    assert prepare_bg(dark, 16).max() <= 1


def test_loose_images_beside_category_folders_are_refused_or_skipped_never_flattened(tmp_path, capsys):
    """Issue 25: fg/cover.png beside fg/animals/ and fg/people/ made one flat category, the sub-folders dropped."""
    from fgbg.cli import main
    from fgbg.make.assets import demo_assets

    bg_src, fg_src = demo_assets()
    bg = tmp_path / "bg"
    bg.mkdir()
    (bg / "room.jpg").write_bytes(sorted(bg_src.glob("*.jpg"))[0].read_bytes())
    fg = tmp_path / "fg"
    for sub, name in (("animals", "cow.png"), ("animals", "dog.png"), ("people", "man_dancing.png")):
        (fg / sub).mkdir(parents=True, exist_ok=True)
        (fg / sub / name).write_bytes((fg_src / name).read_bytes())
    (fg / "cover.png").write_bytes((fg_src / "horse.png").read_bytes())
    argv = ["generate", "--bg", str(bg), "--fg", str(fg), "--size", "64", "--fg-size", "32", "--placements", "1", "--workers", "0", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{fg}: cover.png: an image beside the category sub-folders" in err[0]
    assert not (tmp_path / "refused").exists()
    assert main([*argv, "--out", str(tmp_path / "store"), "--on-bad", "skip"]) == 0
    assert "skipped" in capsys.readouterr().err
    meta = json.loads((tmp_path / "store" / "dataset.json").read_text())
    assert [c["name"] for c in meta["categories"]] == ["animals", "people"] and meta["fg_categories"] == [1, 1, 2]
    assert [s["file"] for s in meta["sources"]["fg"]] == ["animals/cow.png", "animals/dog.png", "people/man_dancing.png"]


def test_a_cutout_folder_with_its_masks_stays_one_flat_category(tmp_path):
    from fgbg.make.assets import demo_assets, find_foregrounds

    fg_src = demo_assets()[1]
    (tmp_path / "cut" / "masks").mkdir(parents=True)
    for name in ("cow.png", "dog.png"):
        (tmp_path / "cut" / name).write_bytes((fg_src / name).read_bytes())
        (tmp_path / "cut" / "masks" / name).write_bytes((fg_src / name).read_bytes())  # as `fgbg cutout` lays them out
    named, loose, _ = find_foregrounds(tmp_path / "cut")
    assert [n for _, n in named] == ["cow.png", "dog.png"] and loose == []
