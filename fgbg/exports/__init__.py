"""Exports: a store as the files detection and segmentation tools read (``fgbg export coco|yolo STORE``).

- ``coco`` (:mod:`fgbg.exports.coco`): ``images/{train,val}/KEY.jpg`` (the stored JPEG bytes),
  ``annotations/instances_{train,val}.json``; with ``depth``, ``depth/{train,val}/KEY.png``;
- ``yolo`` (:mod:`fgbg.exports.yolo`): ``images/{train,val}/KEY.jpg``, ``labels/{train,val}/KEY.txt``
  and ``data.yaml``.

Both are relocatable (no absolute path inside) and carry the marker ``.fgbg-export.json``, the
only sign by which ``overwrite`` replaces a folder. The job itself is :mod:`fgbg.exports.run`;
each shard's work is :mod:`fgbg.exports.walk`. The Hugging Face ``datasets`` library needs no
export: ``load_dataset("webdataset", data_files=...)`` reads a wds store's shards.
"""

from fgbg.exports.run import EXPORT_MARK, FORMATS, VAL_BY, VAL_FRACTION, VAL_SEED, ExportSummary, export_store

__all__ = ["EXPORT_MARK", "FORMATS", "VAL_BY", "VAL_FRACTION", "VAL_SEED", "ExportSummary", "export_store"]
