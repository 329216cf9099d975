"""The variety of a store (issue 27), as inspected: what `fgbg verify` checks of each object's recorded
draws, and which samples the card's and `fgbg show`'s variety picture shows.

Pure functions on annotations (a sample's json dict or a manifest line) and the store's
:class:`~fgbg.config.GenerateConfig`:

- :func:`check_variety` lists every recorded draw that the config could not have made: an angle
  outside ``--rotate``, an object partly out of the frame without ``--truncate`` (or more out of
  it than ``--truncate`` allows), a blend mode not in ``--blend`` (or not the key's with
  ``--blend-each``), light factors outside ``[1-J, 1+J]``, a harmonisation fraction outside
  ``[0, P]``, and distractor records that are incomplete or reach out of the frame.
- :func:`variety_options` names the options a config turns on; :func:`variety_picks` picks,
  per option, the samples that show it best (the most turned objects, the most truncated, one
  per blend mode, the most re-lit, the most harmonised, the most distractors).

The masks themselves (binary, their union equal to ``instances.png > 0``, boxes tight) are
checked by :func:`fgbg.inspect.annotations.check_objects`, for varied stores as for any; since
distractors are in no mask and ``mask.png`` must equal ``instances.png > 0``, that check also
proves no distractor pixel is in a mask.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, NamedTuple

from fgbg.config import GenerateConfig

# Draws are written rounded (fgbg.make.variety): a value may lie this far past its range's bound.
ROUNDING = {"rotate": 0.005, "light": 0.00005, "harmonize": 0.00005, "in_frame": 0.0000005, "sigma": 0.005, "angle": 0.05}
LIGHT_FACTORS = ("brightness", "contrast", "saturation")
DISTRACTOR_KEYS = ("file", "flip", "scale", "box", "depth", "visible")


class DrawRanges(NamedTuple):
    sigma_px: tuple[float, float]  # gaussian blend's feather sigma
    length_px: tuple[int, int]  # motion blend's streak length, inclusive
    hue_per_jitter: float  # hue degrees per unit of --light


@functools.cache
def draw_ranges() -> DrawRanges:
    """The ranges :mod:`fgbg.make.variety` draws from. Imported on first use, not with this module:
    it loads OpenCV and SciPy (about 0.5 s a process), which verifying a plain store never needs."""
    from fgbg.make import variety

    return DrawRanges(variety.GAUSSIAN_SIGMA_PX, variety.MOTION_LENGTH_PX, variety.HUE_DEGREES_PER_JITTER)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _within(value, low: float, high: float, slack: float) -> bool:
    return _number(value) and low - slack <= value <= high + slack


# ---------------------------------------------------------------- verify: one sample


def check_variety(ann: dict, config: GenerateConfig, mode: str = "", distractor_files: set[str] | None = None) -> list[str]:
    """What the recorded draws of one several-object sample say that its store's config could not have drawn.

    Args:
        ann: the sample's json annotation (``objects``, and ``distractors`` with ``--distractors``).
        config: the store's config (from dataset.json).
        mode: the blend mode of the sample's key (``--blend-each``; "" otherwise).
        distractor_files: the distractor cut-outs dataset.json names (None: not checked).

    Returns:
        Problems, one line each, naming the object ("object 2: ...") or distractor ("distractor 1: ...").
    """
    problems = []
    objects = ann.get("objects")
    for n, obj in enumerate(objects if isinstance(objects, list) else [], 1):
        if isinstance(obj, dict):  # not a dict: reported by check_objects
            problems += [f"object {n}: {p}" for p in check_look(obj, config, mode) + check_in_frame(obj, config)]
    return problems + check_distractors(ann, config, mode, distractor_files)


def check_look(thing: dict, config: GenerateConfig, mode: str = "") -> list[str]:
    """Problems of one object's (or distractor's) ``rotate``, ``blend``/``blend_params``, ``light`` and
    ``harmonize`` against ``config``: each is required where its option draws it, and within its range."""
    drawn = {"rotate": config.rotates, "blend": config.blend != ("hard",) or config.blend_each,
             "light": config.light > 0, "harmonize": config.harmonize > 0}  # fmt: skip
    missing = [name for name, on in drawn.items() if on and name not in thing]
    if missing:
        return [f"no {', '.join(missing)} recorded, but the store was made with --{' --'.join(missing)}"]
    problems = []
    if "rotate" in thing:
        low, high = config.rotate_min, config.rotate_max
        if not config.rotates and thing["rotate"] != 0:
            problems.append(f"rotate {thing['rotate']!r}, but the store was made without --rotate")
        elif not _within(thing["rotate"], low, high, ROUNDING["rotate"]):
            problems.append(f"rotate {thing['rotate']!r} is not within the store's --rotate {low:g}:{high:g} degrees")
    if "blend" in thing:
        problems += check_blend(thing["blend"], thing.get("blend_params"), config.blend, mode)
    if "light" in thing:
        problems += check_light(thing["light"], config.light)
    if "harmonize" in thing and not _within(thing["harmonize"], 0.0, config.harmonize, ROUNDING["harmonize"]):
        problems.append(f"harmonize {thing['harmonize']!r} is not within the store's [0, {config.harmonize:g}] (--harmonize)")
    return problems


def check_blend(blend, params, modes: tuple[str, ...], mode: str = "") -> list[str]:
    """Problems of a recorded blend mode (one of ``modes``; ``mode`` itself for a --blend-each key) and its parameters."""
    if blend not in modes:
        return [f"blend {blend!r} is not one of the store's --blend {','.join(modes)}"]
    if mode and blend != mode:
        return [f"blend {blend!r}, but its key is the {mode!r} sibling of --blend-each"]
    if not isinstance(params, dict):
        return [f"blend_params {params!r} is not a dict"]
    expected = {"gaussian": {"sigma"}, "motion": {"length", "angle"}}.get(blend, set())
    if set(params) != expected:
        return [f"blend_params {params} of {blend!r} should hold {', '.join(sorted(expected)) or 'nothing'}"]
    sigma, lengths = draw_ranges().sigma_px, draw_ranges().length_px
    if blend == "gaussian" and not _within(params["sigma"], *sigma, ROUNDING["sigma"]):
        return [f"blend_params sigma {params['sigma']!r} is not within {sigma[0]:g}..{sigma[1]:g} px"]
    if blend == "motion":
        length, angle = params["length"], params["angle"]
        if not (isinstance(length, int) and lengths[0] <= length <= lengths[1]):
            return [f"blend_params length {length!r} is not a whole {lengths[0]}..{lengths[1]} px"]
        if not _within(angle, 0.0, 180.0, ROUNDING["angle"]):
            return [f"blend_params angle {angle!r} is not within 0..180 degrees"]
    return []


def check_light(light, jitter: float) -> list[str]:
    """Problems of recorded light factors: brightness, contrast, saturation in [1-J, 1+J], hue within 18 J degrees."""
    if not isinstance(light, dict) or set(light) != {*LIGHT_FACTORS, "hue"}:
        return [f"light {light!r} should hold {', '.join(LIGHT_FACTORS)} and hue"]
    problems = [
        f"light {name} {light[name]!r} is not within the store's [1-J, 1+J] = [{1 - jitter:g}, {1 + jitter:g}] (--light {jitter:g})"
        for name in LIGHT_FACTORS
        if not _within(light[name], 1 - jitter, 1 + jitter, ROUNDING["light"])
    ]
    most = jitter * draw_ranges().hue_per_jitter
    if not _within(light["hue"], -most, most, ROUNDING["light"]):
        problems.append(f"light hue {light['hue']!r} is not within the store's +-{most:g} degrees (--light {jitter:g})")
    return problems


def check_in_frame(obj: dict, config: GenerateConfig) -> list[str]:
    """Problems of an object's ``in_frame`` share: in (0, 1], below 1 only with --truncate, never below 1 - truncate."""
    if "in_frame" not in obj and config.truncate == 0:
        return []  # stores made before in_frame was recorded
    value = obj.get("in_frame")
    if not _within(value, 0.0, 1.0, 0.0) or value == 0:
        return [f"in_frame {value!r} is not a share in (0, 1]"]
    if value < 1 and config.truncate == 0:
        return [f"in_frame {value:g}: part of it is out of the frame, but the store was made without --truncate"]
    if value < 1 - config.truncate - ROUNDING["in_frame"]:
        return [f"in_frame {value:g}: more of it is out of the frame than --truncate {config.truncate:g} allows"]
    return []


def check_distractors(ann: dict, config: GenerateConfig, mode: str = "", files: set[str] | None = None) -> list[str]:
    """Problems of a sample's ``distractors`` records: there only with --distractors, at most its most, and
    each complete, with its box in the frame, its depth and visible share in [0, 1] and its look in range."""
    records = ann.get("distractors")
    if not config.distractors:
        return [f"has {len(records)} distractor(s), but the store was made without --distractors"] if records else []
    if not isinstance(records, list):
        return ["no `distractors` list (a store made with --distractors has one per sample)"]
    problems = []
    if len(records) > config.distractors_max:
        problems.append(f"{len(records)} distractors, more than the store's --distractor-count {config.distractors_min}:{config.distractors_max}")
    height, width = config.frame
    for j, d in enumerate(records, 1):
        problems += [f"distractor {j}: {p}" for p in check_distractor(d, config, (height, width), mode, files)]
    return problems


def check_distractor(d, config: GenerateConfig, frame: tuple[int, int], mode: str = "", files: set[str] | None = None) -> list[str]:
    """Problems of one distractor record against ``config`` and the (height, width) ``frame``."""
    if not isinstance(d, dict):
        return ["not an object"]
    missing = [k for k in DISTRACTOR_KEYS if k not in d]
    if missing:
        return [f"lacks {', '.join(missing)}"]
    problems = []
    if not isinstance(d["file"], str) or (files is not None and d["file"] not in files):
        problems.append(f"file {d['file']!r} is not one of the store's distractor cut-outs")
    if d["flip"] not in (0, 1) or isinstance(d["flip"], bool):
        problems.append(f"flip {d['flip']!r} is not 0 or 1")
    if not _number(d["scale"]) or d["scale"] <= 0:
        problems.append(f"scale {d['scale']!r} is not a positive number")
    problems += check_box_in_frame(d["box"], frame)
    for name in ("depth", "visible"):
        if not _within(d[name], 0.0, 1.0, 0.0):
            problems.append(f"{name} {d[name]!r} is not within [0, 1]")
    return problems + check_look(d, config, mode)


def check_box_in_frame(box, frame: tuple[int, int]) -> list[str]:
    """Problems of an [x, y, w, h] box of whole pixels that should lie in a (height, width) frame."""
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in box)):
        return [f"box {box!r} is not [x, y, w, h] in whole pixels"]
    x, y, w, h = box
    height, width = frame
    if w < 0 or h < 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        return [f"box {box} reaches out of the {width}x{height} frame"]
    return []


# ---------------------------------------------------------------- the picture: which samples show each option


class Pick(NamedTuple):
    """A sample that shows an option: its key, the object it shows it on (id; 0 for the whole sample) and a caption."""

    key: str
    object_id: int
    caption: str


OPTION_TITLES = {
    "rotation": "rotation (--rotate): the most turned objects",
    "truncation": "truncation (--truncate): the objects most out of the frame",
    "blend": "blend modes (--blend): one object per mode",
    "light": "light (--light): the most re-lit objects",
    "harmonize": "harmonisation (--harmonize): the objects moved most toward the background",
    "distractors": "distractors (--distractors, boxed in white): the composites with the most",
}


def variety_options(config: GenerateConfig) -> list[str]:
    """The variety options ``config`` turns on, in :data:`OPTION_TITLES`'s order."""
    on = {
        "rotation": config.rotates, "truncation": config.truncate > 0, "blend": config.blend != ("hard",),
        "light": config.light > 0, "harmonize": config.harmonize > 0, "distractors": config.distractors,
    }  # fmt: skip
    return [name for name in OPTION_TITLES if on[name]]


def option_sentence(config: GenerateConfig) -> str:
    """The options on, as the card says them: "rotation by -30..30 degrees, truncation up to 0.25, ..." ("" if none)."""
    said = {
        "rotation": f"rotation by {config.rotate_min:g}..{config.rotate_max:g} degrees",
        "truncation": f"truncation (up to {config.truncate:g} of an object out of the frame)",
        "blend": f"blend modes {', '.join(config.blend)}" + (" (every mode on every layout, --blend-each)" if config.blend_each else ""),
        "light": f"light (brightness, contrast, saturation by [{1 - config.light:g}, {1 + config.light:g}],"
        f" hue by up to {config.light * draw_ranges().hue_per_jitter:g} degrees)",
        "harmonize": f"harmonisation toward the background (a fraction up to {config.harmonize:g})",
        "distractors": f"distractors ({config.distractors_min} to {config.distractors_max} a composite, in no mask)",
    }
    return ", ".join(said[name] for name in variety_options(config))


def _light_strength(light: dict) -> float:
    """How far light factors are from the identity: the largest |factor - 1|, hue counted per 18 degrees."""
    return max([abs(light[k] - 1) for k in LIGHT_FACTORS] + [abs(light["hue"]) / draw_ranges().hue_per_jitter])


def _top(scored: Iterable[tuple[float, Pick]], n: int) -> list[Pick]:
    """The ``n`` picks of highest score, one per sample, ties in plan order."""
    best: dict[str, tuple[float, Pick]] = {}  # dicts keep the order keys first came in: plan order
    for score, pick in scored:
        if pick.key not in best or score > best[pick.key][0]:
            best[pick.key] = (score, pick)
    ranked = sorted(best.values(), key=lambda t: -t[0])  # stable: equals stay in plan order
    return [pick for _, pick in ranked[:n]]


def _objects(anns: list[dict]):
    """(annotation, object) of every object of ``anns``."""
    return ((a, o) for a in anns for o in a.get("objects", []))


def variety_picks(anns: list[dict], config: GenerateConfig, n: int = 4) -> dict[str, list[Pick]]:
    """Per option on (:func:`variety_options`), up to ``n`` samples that show it, picked by their annotations.

    Args:
        anns: the samples' annotations (manifest lines or json members), in plan order.
        config: the store's config.
        n: samples per option.

    Returns:
        {option: [Pick]}: rotation, the largest |rotate|; truncation, the smallest in_frame;
        blend, per mode the largest object pasted with it (with --blend-each, one layout's siblings);
        light, the factors farthest from 1; harmonize, the largest fraction; distractors, the most.
    """
    picks: dict[str, list[Pick]] = {}
    for option in variety_options(config):
        if option == "rotation":
            scored = ((abs(o.get("rotate", 0)), Pick(a["key"], o["id"], f"{o.get('rotate', 0):+.1f} deg")) for a, o in _objects(anns))
        elif option == "truncation":
            scored = ((1 - o.get("in_frame", 1), Pick(a["key"], o["id"], f"in frame {o.get('in_frame', 1):.2f}")) for a, o in _objects(anns))
        elif option == "blend":
            picks[option] = blend_picks(anns, config)
            continue
        elif option == "light":
            scored = ((_light_strength(o["light"]), Pick(a["key"], o["id"], light_caption(o["light"])))
                      for a, o in _objects(anns) if isinstance(o.get("light"), dict))  # fmt: skip
        elif option == "harmonize":
            scored = ((o.get("harmonize", 0), Pick(a["key"], o["id"], f"harmonize {o.get('harmonize', 0):.2f}")) for a, o in _objects(anns))
        else:
            scored = ((len(a.get("distractors", [])), Pick(a["key"], 0, f"{len(a.get('distractors', []))} distractor(s)")) for a in anns)
        picks[option] = _top(scored, n)
    return picks


def light_caption(light: dict) -> str:
    """A short caption of light factors: "b1.18 c0.85 s1.02 h-2.1"."""
    return f"b{light['brightness']:.2f} c{light['contrast']:.2f} s{light['saturation']:.2f} h{light['hue']:+.1f}"


def blend_picks(anns: list[dict], config: GenerateConfig) -> list[Pick]:
    """One sample per blend mode: the largest object pasted with that mode; with --blend-each, the
    siblings of the layout whose object 1 is largest, so that only the blending differs between them."""
    if config.blend_each:
        by_layout: dict[str, list[dict]] = {}
        for a in anns:
            mode = next((m for m in config.blend if a["key"].endswith(f"_{m}")), "")
            by_layout.setdefault(a["key"][: -len(mode) - 1] if mode else a["key"], []).append(a)
        layouts = [group for group in by_layout.values() if group and group[0].get("objects")]
        if not layouts:
            return []
        group = max(layouts, key=lambda g: g[0]["objects"][0].get("area", 0))  # max keeps the first of equals
        return [Pick(a["key"], 1, a["objects"][0].get("blend", "?")) for a in group]
    chosen = []
    for mode in config.blend:
        scored = ((o.get("area", 0), Pick(a["key"], o["id"], mode)) for a, o in _objects(anns) if o.get("blend") == mode)
        chosen += _top(scored, 1)
    return chosen
