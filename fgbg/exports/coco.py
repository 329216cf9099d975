"""COCO instance annotations (detectron2, mmdetection, torchvision, FiftyOne, CVAT read them as they are).

One image entry per sample (id = plan index + 1, ``file_name`` KEY.jpg) and one annotation per
object that is seen: ``segmentation`` as compressed RLE (counts a str), ``bbox`` [x, y, w, h] to
pixel edges, ``area`` the visible pixels, ``iscrowd`` 0, and the amodal extras named as the
amodal datasets (COCOA, KINS) name them: ``amodal_segmentation``, ``amodal_bbox``,
``visible_fraction``, ``in_frame_fraction``.

Written by streaming: workers write one JSON object a line to part files (annotations without
their ``id``), and :func:`join_coco` joins the parts of a split into one file, numbering the
annotations from 1 in plan order; nothing is held in memory but a line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO, Iterable

from fgbg.exports.instances import Instance

ID_PREFIX = b'{"id":'  # every annotation line starts so once numbered


def coco_image(index: int, key: str, frame: tuple[int, int]) -> dict:
    """The image entry of plan sample ``index`` (its id is ``index + 1``: stable, from the plan), of frame (H, W)."""
    height, width = frame
    return {"id": index + 1, "file_name": f"{key}.jpg", "width": width, "height": height}


def coco_annotation(instance: Instance, image_id: int) -> dict | None:
    """The annotation of one object, without its ``id`` (numbered when joined); None when nothing of it is seen."""
    o = instance
    if o.area <= 0 or o.box[2] <= 0 or o.box[3] <= 0:
        return None
    return {
        "image_id": image_id,
        "category_id": o.category,
        "iscrowd": 0,
        "area": o.area,
        "bbox": [float(v) for v in o.box],
        "segmentation": o.mask,
        "amodal_bbox": [float(v) for v in o.full_box],
        "amodal_segmentation": o.full_mask,
        "visible_fraction": o.visible,
        "in_frame_fraction": o.in_frame,
    }


def json_line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def coco_header(categories: list[str], info: dict) -> dict:
    """Everything of the file but its images and annotations: info, licenses, categories (ids from 1)."""
    return {"info": info, "licenses": [], "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(categories)]}


def join_coco(out: BinaryIO, header: dict, image_parts: Iterable[Path], annotation_parts: Iterable[Path], first_id: int = 1) -> int:
    """Write one COCO json to ``out``: the header's keys, then ``images`` and ``annotations`` from
    part files of one JSON object a line (in the order given); annotations get ids from ``first_id``.

    Returns:
        the number of annotations written.
    """
    out.write(json.dumps(header, separators=(",", ":"))[:-1].encode() + b',\n"images":[\n')
    _join_lines(out, image_parts, lambda line, n: line)
    out.write(b'],\n"annotations":[\n')
    n = _join_lines(out, annotation_parts, lambda line, n: ID_PREFIX + str(first_id + n).encode() + b"," + line[1:])
    out.write(b"]}\n")
    return n


def _join_lines(out: BinaryIO, parts: Iterable[Path], edit) -> int:
    """Copy the lines of ``parts`` to ``out``, comma-separated, each through ``edit(line, n)``; returns their count."""
    n = 0
    for part in parts:
        with open(part, "rb") as f:
            for line in f:
                if n:
                    out.write(b",\n")
                out.write(edit(line.rstrip(b"\n"), n))
                n += 1
    if n:
        out.write(b"\n")
    return n
