"""The dataset card: ``STORE/README.md`` and ``STORE/previews/*.png``, from the store itself.

Everything on the card is read from ``dataset.json`` (how it was made, the depth source,
sources and counts) and ``stats.json`` (exact statistics; computed if needed, per-shard
cached). :func:`card_markdown` is a pure function of those two and the preview paths.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from fgbg import __version__
from fgbg.errors import NotFound
from fgbg.make.assets import demo_assets
from fgbg.make.compose import VISIBLE_TRIES
from fgbg.config import GenerateConfig
from fgbg.inspect.preview import (
    DEPTH_PREVIEWS,
    OBJECT_PREVIEWS,
    PREVIEW_KINDS,
    VARIETY_PREVIEWS,
    histograms_picture,
    occluded_indices,
    occluded_rows,
    overlap_indices,
    overlap_rows,
    preview,
    real_depth_bgs,
    rooms_rows,
    save_png,
    variety_rows,
)
from fgbg.inspect.variety import OPTION_TITLES, option_sentence, variety_options
from fgbg.inspect.stats import KINDS, check_stats_ours, dimensions, human_bytes, normalisation_snippets, write_stats
from fgbg.store.layout import CARD_MARK, INSTANCES, SHARDS_DIR, atomic_write_bytes, read_dataset_json
from fgbg.store.lock import store_lock
from fgbg.store.owned import check_files_ours, is_card, theirs_among
from fgbg.store.read import StoreReader
from fgbg.store.identity import PRIOR_ORIGIN

CARD = "README.md"
PREVIEWS_DIR = "previews"
ATTRIBUTION_FILE = "ATTRIBUTION.md"

SECTIONS = (
    "## What it is",
    "## Kinds",
    "## Counts",
    "## Size",
    "## Statistics",
    "## Pictures",
    "## How it was made",
    "## How to load it",
    "## Licence and attribution",
)


# ---------------------------------------------------------------- what the store knows


def depth_sentence(depth: dict) -> str:
    """Where the depth maps came from, stated plainly (never implying a network that was not run)."""
    source = depth.get("source", "unknown")
    scale = depth.get("scale", "")
    model = depth.get("depth_model")
    values = f" Values: {scale}; near = {depth.get('near', 'bright')}."
    if source == "estimator":
        minmax = (
            " **Each map is min-max normalised on its own, so values are not comparable between images.**"
            if depth.get("per_image_minmax")
            else ""
        )
        return (
            f"**Estimated by a depth network run on every composite**: `{model}`. It is the network's relative"
            f" inverse depth, not measured depth; {depth.get('clipped_fraction', 0):.2%} of pixels fell outside"
            f" the recorded scale and were clipped.{minmax}" + values
        )
    maps = depth.get("bg_maps", {})
    origins = []
    if maps.get(PRIOR_ORIGIN):
        origins.append(
            f"a ground-plane prior for {maps['ground-plane prior']} background(s) (a flat floor seen by a level"
            f" camera: inverse depth linear in the row below a horizon at {depth.get('horizon')} of the height,"
            " 0 above it; no scene geometry is measured)"
        )
    if maps.get("sidecar"):
        origins.append(f"a depth map supplied beside the photo for {maps['sidecar']} background(s){_sidecar_maker(depth)}")
    if maps.get("estimator"):
        origins.append(f"the depth network `{model}` run once on each of {maps['estimator']} background(s)")
    for name, n in maps.items():
        if name not in (PRIOR_ORIGIN, "sidecar", "estimator"):
            origins.append(f"{name} for {n} background(s)")
    if source not in ("layered", "estimator-per-bg"):
        return f"Depth source `{source}`: " + "; ".join(origins) + "." + values
    network = "" if source == "estimator-per-bg" else "No depth network (not DenseDepth, MiDaS or any other) was run. "
    real = sum(n for name, n in maps.items() if name != PRIOR_ORIGIN)
    hiding = (
        f" On the {real} background(s) with a real depth map the paste is depth-aware: background pixels nearer"
        " than the foreground's layer hide it (the composite shows the background there, and the mask is the"
        " visible part only; each annotation's `visible` is the fraction seen)."
        if real
        else ""
    )
    label = " (`estimator-per-bg`: the network once per background)" if source == "estimator-per-bg" else ""
    return (
        f"**Layered{label}, not estimated per composite.** {network}Each background has one inverse-depth"
        " map: " + "; ".join(origins) + ". A pasted foreground is a flat layer: all its pixels take the"
        " background's value at its foot point (bottom centre of its box), in front of the background there."
        + (" Its size follows that value (`perspective`)." if depth.get("perspective") else "")
        + hiding
        + values
    )


def _sidecar_maker(depth: dict) -> str:
    """Who made the sidecars, where dataset.json knows: '' or ' (rooms rendered by ...)'."""
    made = depth.get("sidecars") or {}
    if made.get("generator") != "fgbg rooms":
        return ""
    return (
        f" (rooms rendered by `fgbg rooms` with its {made.get('renderer')} renderer, seed {made.get('seed')}:"
        f" exact planar depth, inverse depth 1 at {made.get('scale_m')} m)"
    )


def frame_text(config: dict) -> str:
    """The store's frame as width x height ("224x224", "640x480"); stores before --size WxH have no height (square)."""
    width = config["size"]
    return f"{width}x{config.get('height') or width}"


def placement_sentence(config: dict) -> str:
    fixed = config["scale_min"] == config["scale_max"]
    scale = f"scale {config['scale_min']}" if fixed else f"scale drawn uniformly from {config['scale_min']} to {config['scale_max']}"
    if config.get("perspective"):
        return (
            f"Each placement draws a foot point on the ground (below the horizon), then a {scale} that follows the"
            " inverse depth there (near = larger); the foreground stands on that point, inside the image."
        )
    return (
        f"Each placement takes the {config['fg_size']} px foreground at {scale}, then draws a position uniformly"
        " among those that keep the whole foreground inside the background."
    )


def resampling_sentence(meta: dict) -> str:
    """How partly hidden placements were redrawn, for stores with bgs that have real depth ("" otherwise)."""
    if not real_depth_bgs(meta):
        return ""
    config = meta["config"]
    up = (
        " There the foot lands only on surfaces that face up (floor, table tops: where the inverse depth grows"
        " downwards as a horizontal surface's does), not on walls."
        if config.get("perspective") and config.get("stand_on", "anywhere") == "up"
        else ""
    )
    return (
        f" On backgrounds with a real depth map, a placement with less than {config.get('min_visible', 0.5):g} of the"
        f" foreground visible is redrawn from the same seeded generator (up to {VISIBLE_TRIES} draws; if none reaches it,"
        " the most visible draw is kept and its `visible` fraction, below the bar, recorded)." + up
    )


def demo_attribution(meta: dict) -> str | None:
    """The bundled demo assets' ATTRIBUTION.md, if every source of the store is one of them."""
    bg_dir, fg_dir = demo_assets()
    text_path = bg_dir.parent / ATTRIBUTION_FILE
    if not text_path.is_file():
        return None
    shipped = {hashlib.sha256(p.read_bytes()).hexdigest() for d in (bg_dir, fg_dir) if d.is_dir() for p in d.iterdir()}
    sources = meta["sources"]["bg"] + meta["sources"]["fg"]
    if sources and all(s["sha256"] in shipped for s in sources):
        return only_rows_of(text_path.read_text().strip(), {s["file"] for s in sources})
    return None


def only_rows_of(text: str, files: set[str]) -> str:
    """Drop the rows of Markdown tables whose first cell names a file not in ``files``."""
    kept = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        is_header = cells and (cells[0] == "file" or set(cells[0]) <= set("-: "))
        if cells and not is_header and cells[0] not in files:
            continue
        kept.append(line)
    return "\n".join(kept)


# ---------------------------------------------------------------- the Hub's front matter

# Hugging Face Hub size categories: (upper bound on the sample count, name).
SIZE_CATEGORIES = (
    (10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"), (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T"),
)  # fmt: skip
# Licence names as written in attribution files -> the Hub's licence ids (hf.co/docs/hub/repositories-licenses).
_CC = re.compile(r"\bCC[- ]?(BY(?:[- ]?(?:NC|ND|SA))*)[- ]?(\d\.\d)", re.I)
_NAMED = {
    r"\bCC0\b|\bCC[- ]ZERO\b": "cc0-1.0",
    r"\bMIT\b": "mit",
    r"\bApache[- ]?(?:License[- ,]*)?(?:v(?:ersion)?[- ]?)?2(?:\.0)?\b": "apache-2.0",
    r"\bBSD[- ]3[- ]Clause\b": "bsd-3-clause",
    r"\bBSD[- ]2[- ]Clause\b": "bsd-2-clause",
    r"\bGPL[- ]?3(?:\.0)?\b": "gpl-3.0",
    r"\bLGPL[- ]?3(?:\.0)?\b": "lgpl-3.0",
    r"\bUnlicense\b": "unlicense",
    r"\bODbL\b": "odbl",
    r"\bPDDL\b": "pddl",
    r"\bMPL[- ]?2(?:\.0)?\b": "mpl-2.0",
}
_STATED = re.compile(r"\blicen[cs]e\s*:\s*(.+)", re.I)  # "Licence: MIT" in prose


def licence_ids(text: str) -> list[str]:
    """The Hub licence ids a piece of text names (``"Apache-2.0 AND BSD-3-Clause"`` -> both), sorted."""
    found = {f"cc-{'-'.join(re.split(r'[- ]+', parts.lower()))}-{version}" for parts, version in _CC.findall(text)}
    found |= {hub for pattern, hub in _NAMED.items() if re.search(pattern, text, re.I)}
    return sorted(found)


def hub_licences(attribution: str | None) -> list[str]:
    """The licences of a store's sources, as Hub ids, from its attribution text; ``["other"]`` when
    unknown. Read from the "licence" column of its Markdown tables and from "Licence: X" lines;
    a text with neither is searched whole. A licence the Hub has no id for adds "other"."""
    if not attribution:
        return ["other"]
    statements = [m.group(1) for m in _STATED.finditer(attribution)] + _licence_cells(attribution)
    found: set[str] = set()
    for statement in statements or [attribution]:
        ids = licence_ids(statement)
        found |= set(ids) if ids else {"other"}
    return sorted(found) or ["other"]


def _licence_cells(text: str) -> list[str]:
    """The cells of the "licence" (or "license") column of every Markdown table in ``text``."""
    cells, column = [], None
    for line in text.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if row is None:
            column = None
        elif column is None:
            column = next((i for i, c in enumerate(row) if c.lower() in ("licence", "license")), -1)
        elif column >= 0 and not set(row[0]) <= set("-: ") and column < len(row):
            cells.append(row[column])
    return cells


def size_category(samples: int) -> str:
    """The Hub's size category of a dataset of ``samples`` rows: "n<1K", "1K<n<10K", ..."""
    return next((name for bound, name in SIZE_CATEGORIES if samples < bound), "n>1T")


def front_matter(meta: dict, attribution: str | None, name: str) -> str:
    """The YAML block the Hugging Face Hub reads at the top of a dataset's README.md: licence, task
    categories, size category and, for wds stores, a ``configs`` entry pointing its dataset viewer
    at the shards (loaded with the ``webdataset`` builder, no fgbg code)."""
    licences = hub_licences(attribution)
    tasks = ["image-segmentation", "depth-estimation"]
    if several(meta["config"]):
        tasks.append("object-detection")
    q = json.dumps  # a JSON string is a YAML scalar, quoted and escaped
    lines = ["---", f"license: {q(licences[0])}" if len(licences) == 1 else "license:"]
    lines += [f"- {q(lic)}" for lic in licences] if len(licences) > 1 else []
    lines += ["task_categories:", *(f"- {t}" for t in tasks)]
    lines += ["size_categories:", f"- {q(size_category(meta['counts']['samples']))}"]
    lines += ["tags:", "- synthetic", "- fgbg", f"pretty_name: {q(name)}"]
    if meta["format"] == "wds":
        lines += ["configs:", "- config_name: default", f"  data_files: {q(SHARDS_DIR + '/*.tar')}"]
    return "\n".join(lines + ["---"])


# ---------------------------------------------------------------- the card, pure


def _demote_headings(text: str) -> str:
    """Markdown headings of an included file become level 3+, below the card's sections."""
    return "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines())


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _nums(values, digits: int = 4) -> str:
    return ", ".join("-" if v is None else f"{v:.{digits}f}" for v in values)


def card_markdown(meta: dict, stats: dict, previews: dict[str, str], attribution: str | None, name: str) -> str:
    """The README.md text of a store.

    Args:
        meta: the store's dataset.json.
        stats: its stats.json.
        previews: {kind or "aligned": relative path of the PNG}.
        attribution: licence/attribution text of the sources, or None if unknown.
        name: the dataset's name (the store folder's name).
    """
    c, counts, config, kinds = meta["counts"], meta["counts"], meta["config"], stats["kinds"]
    size = frame_text(config)
    flips = "and its mirror image " if counts["flips"] == 2 else ""
    out = [
        front_matter(meta, attribution, name),
        "",
        f"# {name}: a synthetic foreground/background dataset",
        "",
        "## What it is",
        "",
        f"{c['samples']:,} composites (`fg_bg`, {size} RGB): each of {c['fg']} foreground cut-outs {flips}"
        f"pasted at {c['placements']} random places on each of {c['bg']} backgrounds. Every composite comes with"
        " its exact foreground mask (`mask`, 0/255, where the foreground's alpha >= 128), a depth map (`depth`,"
        " inverse depth, near = bright) and an annotation (placement, scale, foot point, depth value, mask area)."
        f" The prepared inputs (`bg`, `fg`, `fg_mask`) are included. Made with fgbg {meta.get('fgbg_version', '?')};"
        f" this card was written by `fgbg card` (fgbg {__version__}) from `dataset.json` and `stats.json`.",
        "",
        "Intended use: training and evaluating models that take (background, composite) and predict the"
        " foreground mask and depth. The composites are synthetic: lighting, shadows and contact are not"
        " physically modelled.",
        "",
        *objects_paragraph(config),
        "## Kinds",
        "",
        _row(["kind", "what", "file type", "channels", "dimensions (HxW)", "count", "bytes"]),
        _row(["---"] * 7),
    ]
    for kind, e in kinds.items():
        names = "/".join(e.get("channel_names", []))
        bits = f", {e['bits']}-bit" if e.get("bits", 8) != 8 else ""
        out.append(
            _row([f"`{kind}`", KINDS[kind].what, e["format"], f"{e['channels']} ({names}{bits})", dimensions(e),
                  f"{e['count']:,}", human_bytes(e["bytes"])])
        )  # fmt: skip
    out += [
        "",
        "## Counts",
        "",
        f"- backgrounds: {c['bg']}; foregrounds: {c['fg']}; flips: {c['flips']}; placements: {c['placements']}",
        f"- samples: {c['bg']} x {c['fg']} x {c['flips']} x {c['placements']} = **{c['samples']:,}**,"
        f" in {c['shards']} shard(s) (format `{meta['format']}`)",
        f"- each sample has {len(meta.get('members', []))} members: " + ", ".join(f"`{m}`" for m in meta.get("members", [])),
        *objects_counts(stats.get("objects"), config),
        "",
        "## Size",
        "",
        f"**{human_bytes(stats['total_bytes'])}** on disk ({stats['total_bytes']:,} bytes: shards"
        f" {human_bytes(meta['total_bytes'])}, plus prepared assets, manifest and dataset.json).",
        "",
        "## Statistics",
        "",
        "Exact, over every pixel of every image: per-channel integer histograms summed over the whole store"
        " (not averages of per-image statistics). Mean and population std on the [0, 1] scale that `ToTensor()`"
        " gives (8-bit values / 255, 16-bit / 65535); `fg` RGB counts only pixels with alpha > 0.",
        "",
        _row(["kind", "channels", "mean", "std", "min", "max", "foreground fraction"]),
        _row(["---"] * 7),
    ]
    for kind, e in kinds.items():
        if not e.get("mean"):
            continue
        fg = f"{e['fg_fraction']:.4f}" if "fg_fraction" in e else ""
        out.append(
            _row([f"`{kind}`", "/".join(e["channel_names"]), _nums(e["mean"]), _nums(e["std"]), _nums(e["min"], 2),
                  _nums(e["max"], 2), fg])
        )  # fmt: skip
    snippets = normalisation_snippets(stats)
    out += ["", "Normalisation, ready to paste (the model inputs; mask and depth are targets, used as is on [0, 1]):", ""]
    out += ["```python", "from torchvision.transforms import Normalize", *snippets.values(), "```", ""]
    out += ["## Pictures", ""]
    out += object_pictures(previews)
    out += variety_pictures(config, previews)
    if "rooms" in previews:
        out += ["Backgrounds with a real depth map (rendered rooms or sidecars), each beside its depth (turbo: red = near).", ""]
        out += [f"![rooms]({previews['rooms']})", ""]
    if "occluded" in previews:
        out += ["Composites in which something nearer (a table, a cabinet, a wall) hides part of the foreground:"
                " background, composite, mask (the visible part only), depth.", ""]  # fmt: skip
        out += [f"![occluded]({previews['occluded']})", ""]
    for kind in PREVIEW_KINDS:
        if kind not in previews:
            continue
        if kind == "aligned":
            out += ["Aligned samples: background, composite, mask, depth (turbo colour map: red = near, blue = far).", ""]
        elif kind == "depth":
            out += ["`depth`: each map in grey (as stored) beside the same map in the turbo colour map.", ""]
        else:
            out += [f"`{kind}`: {KINDS[kind].what}.", ""]
        out += [f"![{kind}]({previews[kind]})", ""]
    fmt = meta["format"]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    out += [
        "## How it was made",
        "",
        f"- **Sources**: {c['bg']} background photo(s) and {c['fg']} foreground cut-out(s), listed with their"
        " sha256 in `dataset.json` (`sources`). Backgrounds were "
        + ("centre-cropped" if config["bg_fit"] == "crop" else "stretched")
        + f" to {'a square' if not config.get('height') else 'the ' + size.replace('x', ':') + ' aspect'} and resized to {size}; foregrounds trimmed to their alpha box, longest side"
        f" {config['fg_size']} px; `fg_mask` is the alpha thresholded at 128.",
        f"- **Placement**: {placement_sentence(config)}{resampling_sentence(meta)} Every random choice is seeded by (seed {config['seed']},"
        " sample key), so the same config and images give byte-identical shards.",
        "- **Flip**: " + ("every foreground is also pasted as its mirror image." if config["flip"] else "none."),
        *variety_made(config),
        "- **Scale**: "
        + (f"fixed at {config['scale_min']}" if config["scale_min"] == config["scale_max"] else f"{config['scale_min']} to {config['scale_max']}")
        + " of the prepared foreground"
        + (" (with perspective)." if config.get("perspective") else "."),
        f"- **Depth**: {depth_sentence(meta['depth'])}",
        f"- **Encoding**: `fg_bg` and `bg` JPEG quality {config['jpeg_quality']}; `mask` and `depth` lossless PNG"
        f" ({config['depth_bits']}-bit depth); format `{fmt}`.",
        f"- **Software**: fgbg {meta.get('fgbg_version', '?')}; {versions}.",
        "- **Config** (from `dataset.json`): " + ", ".join(f"`{k}={v}`" for k, v in config.items()),
        "",
    ]
    out += ["<details><summary>Source files</summary>", ""]
    out += [_row(["kind", "index", "file", "sha256", "depth"]), _row(["---"] * 5)]
    for s in meta["sources"]["bg"]:
        out.append(_row(["bg", s["index"], s["file"], s["sha256"][:12], s.get("depth", "")]))
    for s in meta["sources"]["fg"]:
        out.append(_row(["fg", s["index"], s["file"], s["sha256"][:12], ""]))
    out += ["", "</details>", ""]
    out += ["## How to load it", ""]
    last = c["shards"] - 1
    if fmt == "wds":
        out += [
            "With [webdataset](https://github.com/webdataset/webdataset), no fgbg code needed:",
            "",
            "```python",
            "import webdataset as wds",
            f'ds = wds.WebDataset("shards/shard-{{000000..{last:06d}}}.tar", shardshuffle=False).decode("rgb")',
            "for sample in ds:",
            '    fg_bg, mask, depth, ann = sample["fg_bg.jpg"], sample["mask.png"], sample["depth.png"], sample["json"]',
            *(['    instances = sample["instances.png"]  # ids 1..K of ann["objects"]'] if several(config) else []),
            "```",
            "",
        ]
        out += [
            "With [Hugging Face datasets](https://huggingface.co/docs/datasets) (the front matter of this card"
            " points the Hub's viewer at the same shards):",
            "",
            "```python",
            "from datasets import load_dataset",
            'ds = load_dataset("webdataset", data_files={"train": "shards/*.tar"}, split="train")',
            "```",
            "",
            "To publish it on the Hub: `huggingface-cli upload --repo-type dataset USER/NAME .` from this folder.",
            "",
        ]
    else:
        layout = "KIND/bNNN/KEY.ext" if fmt == "folder" else "KIND/bNNN.zip holding KEY.ext"
        out += [f"Plain files ({layout}; KIND = fg_bg, mask, depth, annotation), one group per background.", ""]
    out += [
        "With fgbg (any format):",
        "",
        "```python",
        "from fgbg.store import iter_samples",
        "from fgbg.codecs import decode_jpeg, decode_png",
        'for key, m in iter_samples("."):   # the folder holding this README',
        '    fg_bg, mask, depth = decode_jpeg(m["fg_bg.jpg"]), decode_png(m["mask.png"]), decode_png(m["depth.png"])',
        "```",
        "",
        f"The background of a sample is `assets/bg/` + its `bg` index (in its `json` and in `manifest.jsonl`)."
        f" Depth PNG value / {(1 << config['depth_bits']) - 1} = inverse depth in [0, 1]. Check the store with"
        " `fgbg verify .`.",
        "",
        "## Licence and attribution",
        "",
    ]
    if attribution:
        out += ["The source images' licences and authors:", "", _demote_headings(attribution), ""]
    else:
        out += [
            "**Unknown.** `dataset.json` records the source files and their sha256 but not their licences. The"
            " composites are derivatives of the source images: before publishing, state the licence of every"
            " background and foreground here (`fgbg card --attribution FILE` includes a file of your own).",
            "",
        ]
    return "\n".join(out + [CARD_MARK])


def several(config: dict) -> bool:
    """Whether the store's samples are annotated object by object (instances, ``objects``; see GenerateConfig.several)."""
    return GenerateConfig.from_dict(config).several


def objects_paragraph(config: dict) -> list[str]:
    """What a store annotated object by object adds to each sample (no lines for a plain one-object store)."""
    if not several(config):
        return []
    lo, hi = config.get("objects_min", 1), config.get("objects_max", 1)
    many = f"{lo} to {hi} objects" if lo != hi else "one object" if hi == 1 else f"{hi} objects"
    return [
        f"Each composite holds {many}: the key's foreground first, the others drawn from all the"
        " foregrounds by the sample's own seeded generator"
        + (" (a category first, uniformly, then a foreground in it: `--balance categories`)." if config.get("balance") == "categories" else ".")
        + " Each object stands at its foot point at the inverse"
        " depth found there, and at every pixel the nearest surface is seen, so nearer objects hide farther ones."
        " `instances` holds the id of the object seen at each pixel (0 = background, i = the i-th of the"
        " annotation's `objects`); `mask` is their union. Per object the annotation gives its category, visible"
        " and full (amodal) boxes and masks (COCO compressed RLE), visible area, the visible and in-frame"
        " fractions and what hides it. Intended use, besides the above: training and evaluating detectors and"
        " instance (and amodal) segmenters.",
        "",
    ]


def objects_counts(objects: dict | None, config: dict) -> list[str]:
    """Counts lines of stats.json's ``objects``: instances per category (a table), and with several
    objects per composite how many each holds, how many are partly hidden and how many were dropped."""
    if not objects:
        return []
    out = [""] + category_table(objects["categories"], config.get("objects_max", 1) > 1)
    if config.get("objects_max", 1) <= 1:
        return out
    per = ", ".join(f"{k}: {v:,}" for k, v in objects["per_image"].items())
    out = [
        f"- objects: **{objects['instances']:,}** in {objects['images']:,} composites"
        f" ({objects['instances'] / max(objects['images'], 1):.2f} per composite; composites by objects in them: {per})",
        f"- partly hidden by another object: {objects['hidden_by_objects']:,} objects; extra objects dropped because"
        f" they never reached `min_visible` {config.get('min_visible', 0.5):g} / `min_area` {config.get('min_area', 0)}"
        f" px: {objects['dropped']:,}",
        *out,
        "",
        "Visible fraction of each object (objects per bin):",
        "",
        _row(objects["visible"]["bins"]),
        _row(["---"] * len(objects["visible"]["bins"])),
        _row(f"{v:,}" for v in objects["visible"]["instances"]),
    ]
    return out


def variety_made(config: dict) -> list[str]:
    """The "How it was made" line of the variety options on (none for a store made without them)."""
    said = option_sentence(GenerateConfig.from_dict(config))
    return [f"- **Variety**: {said}; every draw is recorded per object in its annotation (`objects`)."] if said else []


def variety_pictures(config: dict, previews: dict[str, str]) -> list[str]:
    """The Pictures lines of the variety picture, if it was written: what each of its rows shows."""
    if "variety" not in previews:
        return []
    rows = "; ".join(OPTION_TITLES[o] for o in variety_options(GenerateConfig.from_dict(config)))
    return [
        f"Variety, a row per option on: {rows}. Each composite has every object outlined in its colour, under a"
        " caption (on the colour of the object it describes) giving what was drawn for it.",
        "",
        f"![variety]({previews['variety']})",
        "",
    ]


def category_table(categories: list[dict], extra: bool) -> list[str]:
    """Instances per category; with ``extra`` (several objects per composite) also the extra objects
    (2nd on, whose category ``--balance categories`` draws first), and each category's cut-outs."""
    columns = ["category id", "name", "instances"]
    columns += ["extra objects (2nd on)"] if extra and all("extra" in c for c in categories) else []
    columns += ["cut-outs"] if all("cutouts" in c for c in categories) else []
    rows = [_row(columns), _row(["---"] * len(columns))]
    for c in categories:
        cells = [c["id"], f"`{c['name']}`", f"{c['instances']:,}"]
        cells += [f"{c['extra']:,}"] if "extra objects (2nd on)" in columns else []
        cells += [f"{c['cutouts']:,}"] if "cut-outs" in columns else []
        rows.append(_row(cells))
    return rows


def object_pictures(previews: dict[str, str]) -> list[str]:
    """The Pictures lines of the objects' previews that were written."""
    text = {
        "instances": "Objects: each tinted in its own colour, outlined, boxed (its visible box) and named by its category.",
        "overlaps": "Composites in which objects hide each other: composite, instances, each object's hidden part"
        " striped in its colour inside the outline of its full (amodal) mask, depth (turbo: red = near).",
        "histograms": "Objects per composite, visible fraction of each object (1 = wholly seen), instances per category"
        " and extra objects (2nd on, drawn by `--balance`) per category.",
    }
    out = []
    for kind in OBJECT_PREVIEWS:
        if kind in previews:
            out += [text[kind], "", f"![{kind}]({previews[kind]})", ""]
    return out


# ---------------------------------------------------------------- the shell


def write_previews(store: Path, n: int = 16, rows: int = 4, seed: int = 0, objects: dict | None = None) -> dict[str, str]:
    """previews/KIND.png for every kind and previews/aligned.png; returns {kind: relative path}.

    With bgs that have real depth, also previews/rooms.png (bgs beside their depth maps) and,
    if any sample's fg is partly hidden, previews/occluded.png (those samples, aligned). With
    several objects per composite, previews/instances.png, previews/overlaps.png (if an object
    hides another) and previews/histograms.png (of ``objects``, stats.json's entry). With variety
    options, previews/variety.png (a row per option, ``rows`` composites each)."""
    store = Path(store)
    reader = StoreReader(store)
    paths = {}
    for kind in PREVIEW_KINDS:
        rel = f"{PREVIEWS_DIR}/{kind}.png"
        save_png(preview(reader, kind, rows if kind == "aligned" else n, seed), store / rel)
        paths[kind] = rel
    pictures = {"rooms": lambda: rooms_rows(reader, 8, seed), "occluded": lambda: occluded_rows(reader, rows, seed)}
    wanted = {"rooms": bool(real_depth_bgs(reader.meta)), "occluded": bool(occluded_indices(reader))}
    if INSTANCES in reader.suffixes:
        pictures |= {
            "instances": lambda: preview(reader, "instances", 8, seed),
            "overlaps": lambda: overlap_rows(reader, rows, seed),
            "histograms": lambda: histograms_picture(objects),
        }
        wanted |= {"instances": True, "overlaps": bool(overlap_indices(reader)), "histograms": objects is not None}
    pictures["variety"] = lambda: variety_rows(reader, rows)
    wanted["variety"] = bool(variety_options(GenerateConfig.from_dict(reader.meta["config"])))
    for kind in DEPTH_PREVIEWS + OBJECT_PREVIEWS + VARIETY_PREVIEWS:
        if wanted.get(kind):
            rel = f"{PREVIEWS_DIR}/{kind}.png"
            save_png(pictures[kind](), store / rel)
            paths[kind] = rel
    return paths


def write_card(
    store: Path,
    attribution: Path | None = None,
    workers: int | None = None,
    progress: bool | None = False,
    n: int = 16,
) -> Path:
    """Write ``STORE/README.md`` and ``STORE/previews/*.png``; returns the README path.

    Stats come from :func:`fgbg.inspect.stats.write_stats` (cached per shard, so cheap after
    ``fgbg stats``). ``attribution``: a file whose text goes in the licence section;
    default: the bundled demo assets' attribution when the store was made from them.
    Holds the store's write lock while it writes.

    Raises:
        FileNotFoundError: no dataset.json, or the attribution file is missing.
        StoreBusy: another process is writing the store.
        CorruptStore: a member or asset does not decode (names it).
        NotOurs: the store holds a README.md that is not a card (no ``CARD_MARK``), or
            stats.json that fgbg stats did not write; nothing is written.
    """
    store = Path(store)
    meta = read_dataset_json(store)
    check_files_ours(theirs_among([store / CARD], is_card), "fgbg card")
    check_stats_ours(store)
    if attribution is not None:
        attribution = Path(attribution)
        if not attribution.is_file():
            raise NotFound(f"{attribution}: not found; give a text or Markdown file naming each source's licence")
        text = attribution.read_text().strip()
    else:
        text = demo_attribution(meta)
    with store_lock(store, "card"):
        stats = write_stats(store, workers=workers, progress=progress, lock=False)
        previews = write_previews(store, n, objects=stats.get("objects"))
        path = store / CARD
        atomic_write_bytes(path, (card_markdown(meta, stats, previews, text, store.resolve().name) + "\n").encode())
    return path
