"""A fast reader of the plain tar shards fgbg writes: (member name, bytes) straight from the buffer.

``tarfile`` spends ~0.1 ms parsing each header; a whole-shard statistics pass reads four
members per sample, so that alone capped it near 3000 samples/s per core. Our shards are
plain USTAR (regular files, names under 100 bytes); anything else (long names, pax
headers, prefixes) falls back to ``tarfile`` so any valid tar still reads correctly.
"""

from __future__ import annotations

import io
import tarfile
from typing import Iterator

BLOCK = 512
_PLAIN = (b"0", b"\0")  # regular-file type flags


def iter_tar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every regular file in a tar held in memory, in order.

    Raises:
        tarfile.ReadError: the buffer is not a (complete) tar.
    """
    view = memoryview(data)
    offset, end = 0, len(data)
    while offset + BLOCK <= end:
        header = data[offset : offset + BLOCK]
        if header == b"\0" * BLOCK:
            return  # end-of-archive marker
        if header[156:157] not in _PLAIN or header[345:346] != b"\0":
            yield from _fallback(data, offset)
            return
        name = header[:100].split(b"\0", 1)[0].decode()
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            raise tarfile.ReadError(f"bad header at byte {offset}") from None
        start = offset + BLOCK
        if start + size > end:
            raise tarfile.ReadError(f"unexpected end of data in {name}")
        yield name, bytes(view[start : start + size])
        offset = start + (size + BLOCK - 1) // BLOCK * BLOCK
    raise tarfile.ReadError("unexpected end of data: no end-of-archive marker (a truncated tar?)")


def _fallback(data: bytes, offset: int) -> Iterator[tuple[str, bytes]]:
    """The rest of the archive, from ``offset`` (a header), through tarfile."""
    with tarfile.open(fileobj=io.BytesIO(data[offset:]), mode="r") as tar:
        for info in tar:
            if info.isfile():
                yield info.name, tar.extractfile(info).read()


def iter_tar_samples(data: bytes) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group contiguous members by key (the name up to its first dot), like WebDataset."""
    key, members = None, {}
    for name, content in iter_tar_members(data):
        k, _, suffix = name.partition(".")
        if k != key and key is not None:
            yield key, members
            members = {}
        key = k
        members[suffix] = content
    if key is not None:
        yield key, members
