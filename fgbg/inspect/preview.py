"""Pictures of a store: a grid of each kind, and rows of aligned (bg, fg_bg, mask, depth).

Pure helpers work on arrays (:func:`turbo`, :func:`grid`, :func:`depth_panel`); a few
samples are picked (seeded, spread over the whole store) and only those are read, through
the store's reader (:class:`fgbg.store.read.StoreReader`, any format); a damaged member
raises a one-line :class:`fgbg.errors.CorruptStore` naming it. ``fgbg show`` and
``fgbg card`` use :func:`preview`; the card adds, for bgs with real depth (rendered rooms,
sidecars), :func:`rooms_rows` and :func:`occluded_rows`, and for stores made with variety options
(issue 27) :func:`variety_rows`, a row per option of the samples that show it most.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fgbg import codecs
from fgbg.errors import ConfigError
from fgbg.inspect.annotations import sample_objects
from fgbg.config import GenerateConfig
from fgbg.inspect.drawing import (
    bar_chart, captioned, colour, display_scale, draw_hidden, draw_instances, draw_outlines, enlarge, stack, titled,
)  # fmt: skip
from fgbg.inspect.variety import OPTION_TITLES, variety_options, variety_picks
from fgbg.masks import box, rle_decode
from fgbg.inspect.stats import manifest_counts
from fgbg.make.categories import store_categories
from fgbg.store.layout import INSTANCES, MANIFEST
from fgbg.store.read import StoreReader, decoding
from fgbg.store.identity import PRIOR_ORIGIN as PRIOR

PREVIEW_KINDS = ("bg", "fg", "fg_mask", "fg_bg", "mask", "depth", "aligned")
# Pictures of the objects in the composites (any store; made for those with several objects):
# instances in colour with boxes and names, composites in which objects hide each other, and
# histograms of objects per composite, visible fractions and instances per category.
OBJECT_PREVIEWS = ("instances", "overlaps", "histograms")
# A picture of the variety options a store was made with (issue 27): a row per option that is on.
VARIETY_PREVIEWS = ("variety",)
SHOW_KINDS = PREVIEW_KINDS + OBJECT_PREVIEWS + VARIETY_PREVIEWS
VARIETY_COLUMNS = 6  # composites per option at most, however many are asked for
# Pictures of stores whose bgs have real depth (rendered rooms, sidecars): the bgs beside their
# depth maps, and composites in which something nearer hides part of the foreground.
DEPTH_PREVIEWS = ("rooms", "occluded")
ALIGNED = ("bg", "fg_bg", "mask", "depth")
PAD = 4  # pixels between cells
BACKGROUND = 255  # page colour
CHECKER = (204, 230)  # the two greys behind transparent fg pixels
CHECKER_PX = 8

# Turbo (Google, Apache-2.0) as its published degree-5 polynomial fit, per channel.
_TURBO_COEFFS = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)


def turbo_table() -> np.ndarray:
    """The turbo colour map as a lookup table: uint8 (256, 3), dark blue (0) to dark red (255)."""
    x = np.linspace(0.0, 1.0, 256)
    powers = np.stack([x**i for i in range(6)])  # (6, 256)
    return np.clip(np.rint((_TURBO_COEFFS @ powers).T * 255), 0, 255).astype(np.uint8)


TURBO = turbo_table()


def turbo(values: np.ndarray) -> np.ndarray:
    """float (H, W) in [0, 1] -> uint8 (H, W, 3) colours (near = 1 = red, far = 0 = blue).

    Examples:
        >>> turbo(np.array([[0.0, 1.0]])).shape
        (1, 2, 3)
    """
    index = np.clip(np.rint(np.asarray(values, np.float64) * 255), 0, 255).astype(np.uint8)
    return TURBO[index]


def depth_unit(depth: np.ndarray) -> np.ndarray:
    """uint8 or uint16 (H, W) depth PNG values -> float32 (H, W) inverse depth in [0, 1]."""
    top = 255 if depth.dtype == np.uint8 else 65535
    return depth.astype(np.float32) / top


def grey_rgb(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W, 3)."""
    return np.repeat(img[..., None], 3, axis=2)


def depth_panel(depth: np.ndarray) -> np.ndarray:
    """uint8/uint16 (H, W) depth -> uint8 (H, 2W + PAD, 3): the grey map beside its turbo colours."""
    unit = depth_unit(depth)
    grey = grey_rgb(np.rint(unit * 255).astype(np.uint8))
    gap = np.full((depth.shape[0], PAD, 3), BACKGROUND, np.uint8)
    return np.concatenate([grey, gap, turbo(unit)], axis=1)


def over_checkerboard(rgba: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 4) -> uint8 (H, W, 3): alpha-blended over a grey checkerboard."""
    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // CHECKER_PX + xx // CHECKER_PX) % 2)[..., None] == 0, *CHECKER).astype(np.float32)
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return np.rint(rgba[..., :3] * alpha + board * (1 - alpha)).astype(np.uint8)


def grid(images: list[np.ndarray], cols: int | None = None, pad: int = PAD) -> np.ndarray:
    """Lay out RGB images on a white page, each centred in a cell the size of the largest.

    Args:
        images: uint8 (h, w, 3) each; sizes may differ.
        cols: cells per row (default: about square).

    Returns:
        uint8 (rows * (H + pad) + pad, cols * (W + pad) + pad, 3).
    """
    if not images:
        raise ValueError("no images to lay out")
    cols = cols or math.ceil(math.sqrt(len(images)))
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    ch = max(im.shape[0] for im in images)
    cw = max(im.shape[1] for im in images)
    page = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), BACKGROUND, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        y = pad + r * (ch + pad) + (ch - im.shape[0]) // 2
        x = pad + c * (cw + pad) + (cw - im.shape[1]) // 2
        page[y : y + im.shape[0], x : x + im.shape[1]] = im
    return page


def with_header(page: np.ndarray, labels: list[str], cell_width: int, pad: int = PAD) -> np.ndarray:
    """Add a row of column labels above a grid whose cells are ``cell_width`` wide."""
    height = 16
    head = Image.new("RGB", (page.shape[1], height), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(head)
    font = ImageFont.load_default()
    for i, label in enumerate(labels):
        draw.text((pad + i * (cell_width + pad) + 2, 2), label, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(head), page], axis=0)


# ---------------------------------------------------------------- reading a few samples


def pick(n_total: int, n: int, seed: int = 0) -> list[int]:
    """``n`` distinct indices of ``range(n_total)``, seeded, sorted (all if n >= n_total)."""
    if n >= n_total:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def read_samples(store: Path | StoreReader, indices: list[int]) -> list[tuple[str, dict[str, bytes]]]:
    """The samples at plan positions ``indices`` (any format), reading only those."""
    reader = as_reader(store)
    return [(reader.key(i), reader.read(i)) for i in indices]


def as_reader(store: Path | StoreReader) -> StoreReader:
    return store if isinstance(store, StoreReader) else StoreReader(store)


def _asset_image(reader: StoreReader, kind: str, i: int) -> np.ndarray:
    """Prepared input ``i`` of ``kind`` (bg, fg, fg_mask) as a display image uint8 (h, w, 3)."""
    data = reader.read_asset(kind, i)
    with decoding(str(reader.asset_path(kind, i)), reader.store):
        if kind == "bg":
            return codecs.decode_jpeg(data)
        if kind == "bg_depth":
            return turbo(depth_unit(codecs.decode_png(data)))
        if kind == "fg":
            return over_checkerboard(codecs.decode_png(data))
        return grey_rgb(codecs.decode_png(data))


def _member_image(reader: StoreReader, index: int, suffix: str, data: bytes) -> np.ndarray:
    """A sample member as a display image: uint8 (H, W, 3) (depth: grey beside turbo)."""
    img = reader.decode(index, suffix, data)
    if suffix == "fg_bg.jpg":
        return img
    return grey_rgb(img) if suffix == "mask.png" else depth_panel(img)


def kind_images(store: Path | StoreReader, kind: str, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` display images (uint8 (h, w, 3)) of one kind, picked with ``seed``."""
    reader = as_reader(store)
    if kind in ("bg", "fg", "fg_mask"):
        count = reader.meta["counts"]["bg" if kind == "bg" else "fg"]
        return [_asset_image(reader, kind, i) for i in pick(count, n, seed)]
    suffix = {"fg_bg": "fg_bg.jpg", "mask": "mask.png", "depth": "depth.png"}[kind]
    return [_member_image(reader, i, suffix, reader.read(i, (suffix,))[suffix]) for i in pick(len(reader), n, seed)]


def aligned_rows(store: Path | StoreReader, n: int = 4, seed: int = 0) -> np.ndarray:
    """``n`` rows of (bg, fg_bg, mask, depth in turbo) of the same samples, with a header."""
    reader = as_reader(store)
    return aligned_page(reader, pick(len(reader), n, seed))


def real_depth_bgs(meta: dict) -> list[int]:
    """Indices of the bgs with a real depth map (not the ground-plane prior), from dataset.json's sources."""
    return [s["index"] for s in meta["sources"]["bg"] if s.get("depth", PRIOR) != PRIOR]


def rooms_rows(store: Path | StoreReader, n: int = 8, seed: int = 0, per_row: int = 4) -> np.ndarray:
    """Up to ``n`` bgs with real depth, each beside its depth map (turbo): uint8 (H, W, 3).

    Raises:
        ValueError: no bg of the store has a real depth map.
    """
    reader = as_reader(store)
    bgs = real_depth_bgs(reader.meta)
    if not bgs:
        raise ValueError("no background with a real depth map")
    cells = []
    for j in pick(len(bgs), n, seed):
        cells += [_asset_image(reader, "bg", bgs[j]), _asset_image(reader, "bg_depth", bgs[j])]
    cols = 2 * min(per_row, len(cells) // 2)
    return with_header(grid(cells, cols=cols), ["bg", "depth (turbo)"] * (cols // 2), cells[0].shape[1])


def occluded_indices(store: Path | StoreReader) -> list[int]:
    """Plan positions of the samples in which the bg hides part of a fg, from the manifest: annotation
    ``visible`` < 1, or with several objects, an object hidden by the bg (0 in its ``hidden_by``)."""
    reader = as_reader(store)
    path = reader.store / MANIFEST
    if not path.is_file():
        return []
    found = []
    with open(path) as f:
        for line in f:
            ann = json.loads(line)
            if "objects" in ann:
                hidden = any(0 in o.get("hidden_by", []) for o in ann["objects"])
            else:
                hidden = ann.get("visible", 1.0) < 1.0
            if hidden:
                found.append(reader.index_of(ann["key"]))
    return found


def occluded_rows(store: Path | StoreReader, n: int = 4, seed: int = 0) -> np.ndarray:
    """``n`` aligned rows (bg, fg_bg, mask, depth) of samples in which the bg hides part of the fg.

    Raises:
        ValueError: no sample of the store is partly hidden.
    """
    reader = as_reader(store)
    found = occluded_indices(reader)
    if not found:
        raise ValueError("no sample with a partly hidden foreground")
    return aligned_page(reader, [found[j] for j in pick(len(found), n, seed)])


def aligned_page(reader: StoreReader, indices: list[int]) -> np.ndarray:
    """Rows of (bg, fg_bg, mask, depth in turbo) of the samples at plan positions ``indices``, with a header."""
    cells = []
    for i in indices:
        m = reader.read(i)
        depth = reader.decode(i, "depth.png", m["depth.png"])
        cells += [
            _asset_image(reader, "bg", reader.plan[i].bg),
            reader.decode(i, "fg_bg.jpg", m["fg_bg.jpg"]),
            grey_rgb(reader.decode(i, "mask.png", m["mask.png"])),
            turbo(depth_unit(depth)),
        ]
    page = grid(cells, cols=len(ALIGNED))
    return with_header(page, ["bg", "fg_bg", "mask", "depth (turbo)"], cells[0].shape[1])


def preview(store: Path | StoreReader, kind: str, n: int = 32, seed: int = 0, cols: int | None = None) -> np.ndarray:
    """A picture of one kind (or "aligned" rows): uint8 (H, W, 3).

    Args:
        store: a complete store (any format), or a reader of it.
        kind: one of :data:`SHOW_KINDS`.
        n: images (rows for "aligned" and "overlaps"; per row, up to VARIETY_COLUMNS, for "variety";
            unused by "histograms"); fewer if the store has fewer.
        seed: which images are picked.
        cols: cells per row (default 8; 4 for depth, whose cells are double wide).

    Raises:
        ConfigError: an unknown kind or n < 1 (a ValueError too); "overlaps" of a store in which
            no object hides another; "variety" of a store made with no variety option.
        CorruptStore: a picked member or asset is missing or does not decode (names it).
    """
    if kind not in SHOW_KINDS:
        raise ConfigError(f"--kind: unknown kind {kind!r}; choose from {', '.join(SHOW_KINDS)}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if kind == "aligned":
        return aligned_rows(store, n, seed)
    if kind in OBJECT_PREVIEWS:
        return object_preview(store, kind, n, seed)
    if kind == "variety":
        return variety_rows(store, min(n, VARIETY_COLUMNS))
    return grid(kind_images(store, kind, n, seed), cols or (4 if kind == "depth" else 8))


# ---------------------------------------------------------------- objects


def category_names(meta: dict) -> list[str]:
    """Category names of a store, id i at position i - 1 (older stores: see store_categories)."""
    return store_categories(meta).names


def sample_instances(reader: StoreReader, i: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Sample ``i``'s composite uint8 (S, S, 3), instance ids (S, S) and objects (the json's ``objects``;
    a single-object store's mask is instance 1, its fg's category, boxed tight)."""
    several = INSTANCES in reader.suffixes
    m = reader.read(i, ("fg_bg.jpg", INSTANCES if several else "mask.png", "json"))
    rgb = reader.decode(i, "fg_bg.jpg", m["fg_bg.jpg"])
    ann = reader.decode(i, "json", m["json"])
    if several:
        return rgb, reader.decode(i, INSTANCES, m[INSTANCES]), ann["objects"]
    ids = (reader.decode(i, "mask.png", m["mask.png"]) > 0).astype(np.uint8)
    objects = sample_objects(ann, store_categories(reader.meta).of_fg)
    return rgb, ids, [{**objects[0], "box": box(ids > 0)}]


def instance_cell(reader: StoreReader, i: int, names: list[str]) -> np.ndarray:
    """Sample ``i`` with its instances tinted, boxed and named: uint8 (S * f, S * f, 3)."""
    rgb, ids, objects = sample_instances(reader, i)
    labels = [(o["id"], o["box"], names[o["category"] - 1]) for o in objects]
    return draw_instances(rgb, ids, labels, display_scale(rgb.shape[0]))


def overlap_indices(store: Path | StoreReader) -> list[int]:
    """Plan positions of the samples in which an object hides part of another, from the manifest."""
    reader = as_reader(store)
    path = reader.store / MANIFEST
    if INSTANCES not in reader.suffixes or not path.is_file():
        return []
    found = []
    with open(path) as f:
        for line in f:
            ann = json.loads(line)
            if any(i != 0 for o in ann.get("objects", []) for i in o.get("hidden_by", [])):
                found.append(reader.index_of(ann["key"]))
    return found


def overlap_rows(store: Path | StoreReader, n: int = 4, seed: int = 0) -> np.ndarray:
    """``n`` rows of samples in which objects hide each other: composite, instances (boxed, named),
    hidden parts (striped, full masks outlined) and depth (turbo), with a header.

    Raises:
        ConfigError: no sample of the store has an object hiding another.
    """
    reader = as_reader(store)
    found = overlap_indices(reader)
    if not found:
        raise ConfigError(f"--kind overlaps: no composite of {reader.store} has an object hiding another (made with --objects 1?)")
    names = category_names(reader.meta)
    cells = []
    for i in [found[j] for j in pick(len(found), n, seed)]:
        rgb, ids, objects = sample_instances(reader, i)
        factor = display_scale(rgb.shape[0])
        full = {o["id"]: rle_decode(o["full_mask"]) for o in objects}
        depth = reader.decode(i, "depth.png", reader.read(i, ("depth.png",))["depth.png"])
        labels = [(o["id"], o["box"], names[o["category"] - 1]) for o in objects]
        cells += [
            enlarge(rgb, factor),
            draw_instances(rgb, ids, labels, factor),
            draw_hidden(rgb, ids, full, factor),
            enlarge(turbo(depth_unit(depth)), factor),
        ]
    page = grid(cells, cols=4)
    return with_header(page, ["fg_bg", "instances", "hidden parts (striped)", "depth (turbo)"], cells[0].shape[1])


def histograms_picture(summary: dict) -> np.ndarray:
    """Bar charts of stats.json's ``objects`` entry: objects per composite, the visible fraction
    of each object, instances per category and, where composites hold several objects, the extra
    objects (2nd on) per category. uint8 (H, W, 3)."""
    per_image = summary["per_image"]
    most = max((int(k) for k in per_image), default=1)
    least = min((int(k) for k in per_image), default=1)
    counts = [per_image.get(str(k), 0) for k in range(least, most + 1)]
    charts = [
        bar_chart("objects per composite (composites)", [str(k) for k in range(least, most + 1)], counts),
        bar_chart("visible fraction of each object (objects)", summary["visible"]["bins"], summary["visible"]["instances"]),
        bar_chart("instances per category", [c["name"][:12] for c in summary["categories"]],
                  [c["instances"] for c in summary["categories"]]),  # fmt: skip
    ]
    if any(c.get("extra") for c in summary["categories"]):  # what --balance draws: objects 2nd on
        charts.append(bar_chart("extra objects (2nd on) per category", [c["name"][:12] for c in summary["categories"]],
                                [c["extra"] for c in summary["categories"]]))  # fmt: skip
    return grid(charts, cols=len(charts), pad=PAD)


def object_preview(store: Path | StoreReader, kind: str, n: int, seed: int = 0) -> np.ndarray:
    """A picture of the objects: "instances" (a grid), "overlaps" (rows) or "histograms"."""
    reader = as_reader(store)
    if kind == "overlaps":
        return overlap_rows(reader, n, seed)
    if kind == "histograms":
        return histograms_picture(manifest_counts(reader.store, reader.meta).summary(category_names(reader.meta)))
    names = category_names(reader.meta)
    return grid([instance_cell(reader, i, names) for i in pick(len(reader), n, seed)], cols=4)


# ---------------------------------------------------------------- variety


def manifest_annotations(reader: StoreReader) -> list[dict]:
    """Every sample's manifest line (its annotation without masks), in plan order; [] without a manifest."""
    path = reader.store / MANIFEST
    if not path.is_file():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def variety_cell(reader: StoreReader, key: str, object_id: int, caption: str) -> np.ndarray:
    """Sample ``key``'s composite with every object outlined in its colour and its distractors boxed in
    white, under ``caption`` on the colour of object ``object_id`` (white for 0: the whole composite)."""
    i = reader.index_of(key)
    several = INSTANCES in reader.suffixes
    m = reader.read(i, ("fg_bg.jpg", INSTANCES if several else "mask.png", "json"))
    rgb = reader.decode(i, "fg_bg.jpg", m["fg_bg.jpg"])
    ids = reader.decode(i, INSTANCES, m[INSTANCES]) if several else (reader.decode(i, "mask.png", m["mask.png"]) > 0).astype(np.uint8)
    boxes = [d["box"] for d in reader.decode(i, "json", m["json"]).get("distractors", [])]
    picture = draw_outlines(rgb, ids, display_scale(max(rgb.shape[:2])), boxes)
    return captioned(picture, caption, colour(object_id) if object_id else (255, 255, 255))


def variety_rows(store: Path | StoreReader, n: int = 4) -> np.ndarray:
    """The variety picture: a titled row per option the store was made with (rotation, truncation, blend
    modes, light, harmonisation, distractors), each up to ``n`` composites that show it most, picked by
    their annotations (:func:`fgbg.inspect.variety.variety_picks`). uint8 (H, W, 3).

    Raises:
        ConfigError: the store was made with no variety option.
    """
    reader = as_reader(store)
    config = GenerateConfig.from_dict(reader.meta["config"])
    if not variety_options(config):
        raise ConfigError(f"--kind variety: {reader.store} was made with no variety option"
                          " (--rotate, --truncate, --blend, --light, --harmonize, --distractors)")  # fmt: skip
    rows = []
    for option, picks in variety_picks(manifest_annotations(reader), config, n).items():
        cells = [variety_cell(reader, *pick) for pick in picks]
        body = grid(cells, cols=len(cells)) if cells else np.full((PAD, PAD, 3), BACKGROUND, np.uint8)
        rows.append(titled(body, OPTION_TITLES[option] + ("" if cells else ": no composite shows it")))
    return stack(rows)


def save_png(img: np.ndarray, path: Path) -> Path:
    """Write uint8 (H, W, 3) as PNG (folders made as needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False, compress_level=6)
    path.write_bytes(buf.getvalue())
    return path


def show(store: Path, kind: str, n: int, out: Path, seed: int = 0) -> Path:
    """``fgbg show``: write the preview of ``kind`` to ``out``; returns the path."""
    return save_png(preview(store, kind, n, seed), out)
