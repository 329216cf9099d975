"""The store: its plan (every key, by shard), shards in one of three formats, prepared assets, manifest and dataset.json.

Every format holds the same members per sample (WebDataset naming):
``KEY.fg_bg.jpg``, ``KEY.mask.png``, ``KEY.depth.png``, ``KEY.json``, and ``KEY.instances.png``
where composites hold several objects. One reader,
:class:`StoreReader`, serves them all (random access by index or key, shard by shard).
"""

from fgbg.store.layout import MEMBERS, atomic_write_bytes, atomic_write_json, read_dataset_json
from fgbg.store.read import StoreReader, iter_samples
from fgbg.store.write import write_shard

__all__ = [
    "MEMBERS",
    "StoreReader",
    "atomic_write_bytes",
    "atomic_write_json",
    "iter_samples",
    "read_dataset_json",
    "write_shard",
]
