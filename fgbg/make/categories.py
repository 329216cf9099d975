"""Categories of foregrounds: the sub-folders of ``--fg``, or one category named after a flat folder.

A ``--fg`` folder whose images sit in sub-folders (``people/``, ``animals/`` ...) gives one
category per sub-folder, in sorted order, with ids from 1 (COCO's convention); a folder of
images gives one category named after it (``fgbg cutout``'s ``masks/`` beside its cut-outs, and
sub-folders without images, ignored). Images beside category sub-folders are in no category:
refused, or left out with ``--on-bad skip`` (:func:`fgbg.make.assets.find_foregrounds`). A category's fgs are named ``SUBFOLDER/FILE`` in the
store's sources, so category ids follow from the sources and a store's identity holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_NAME = "foreground"  # the one category of a store made before categories were recorded


@dataclass(frozen=True)
class Categories:
    """Category names (id = position + 1) and the category id of every fg, by fg index."""

    names: list[str]
    of_fg: list[int]

    def record(self) -> dict:
        """What dataset.json keeps: ``categories`` ([{id, name}]) and ``fg_categories`` (id per fg)."""
        return {
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(self.names)],
            "fg_categories": list(self.of_fg),
        }


def from_files(files: list[str], folder_name: str) -> Categories:
    """Categories of fg source names: ``SUB/FILE`` names give one category per SUB (sorted), plain names one
    category named ``folder_name``."""
    subs = [f.split("/", 1)[0] if "/" in f else None for f in files]
    if not any(subs):
        return Categories([folder_name or FALLBACK_NAME], [1] * len(files))
    names = sorted({s or folder_name or FALLBACK_NAME for s in subs})
    ids = {name: i + 1 for i, name in enumerate(names)}
    return Categories(names, [ids[s or folder_name or FALLBACK_NAME] for s in subs])


def store_categories(meta: dict) -> Categories:
    """A store's categories from its dataset.json (or state): recorded, or (older stores) from the fg file names."""
    if "categories" in meta and "fg_categories" in meta:
        names = [c["name"] for c in sorted(meta["categories"], key=lambda c: c["id"])]
        return Categories(names, list(meta["fg_categories"]))
    return from_files([s["file"] for s in meta["sources"]["fg"]], FALLBACK_NAME)
