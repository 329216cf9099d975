"""The tar shards fgbg writes: their member headers, and the member index written beside them.

``tarfile`` spends ~0.1 ms parsing each header, and a 400k-sample store has 1.6M of them.
:func:`scan_tar` parses the plain USTAR headers our writer makes straight from the bytes
(anything else - long names, pax headers, prefixes - is handed to ``tarfile``, so any
valid tar still reads correctly), and reads only headers, seeking over the data.

The index (``shards/shard-NNNNNN.idx``) records each member's data offset and size once,
at write time, so no reader has to scan a tar at all: little-endian uint64
``[MAGIC, N, M, then N x M x (offset, size)]`` for N samples of M members each (in
:data:`fgbg.store.layout.MEMBERS` order): 64 bytes per sample, 26 MB for 400k samples.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np

BLOCK, RECORD = 512, 20 * 512  # tar's block and record sizes
ZERO_BLOCK = b"\0" * BLOCK
_PLAIN = (b"0", b"\0")  # regular-file type flags
INDEX_SUFFIX = ".idx"
INDEX_MAGIC = int.from_bytes(b"fgbgidx1", "little")
INDEX_HEADER = 3  # uint64 words before the table: magic, samples, members


class TarMember(NamedTuple):
    name: str
    offset: int  # byte offset of the member's data in the tar
    size: int  # bytes of data
    regular: bool  # a regular file (not a directory, link, ...)


def scan_tar(f: BinaryIO, end: int) -> Iterator[TarMember]:
    """Every member of the tar in the seekable binary file ``f`` (``end`` bytes long), in
    order, reading only the headers.

    Raises:
        tarfile.ReadError: a damaged header, or the tar is cut short (a member runs past
            ``end``, or no end-of-archive marker).
    """
    offset = 0
    while offset + BLOCK <= end:
        f.seek(offset)
        header = f.read(BLOCK)
        if header == ZERO_BLOCK:
            return  # end-of-archive marker
        if len(header) < BLOCK:
            break
        if header[156:157] not in _PLAIN or header[345:346] != b"\0":
            yield from _tarfile_members(f, offset)
            return
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            raise tarfile.ReadError(f"damaged header at byte {offset}") from None
        start = offset + BLOCK
        if start + size > end:
            raise tarfile.ReadError(f"cut short in {name} ({end - start} of {size} bytes)")
        yield TarMember(name, start, size, True)
        offset = start + (size + BLOCK - 1) // BLOCK * BLOCK
    raise tarfile.ReadError("cut short: no end-of-archive marker")


def _tarfile_members(f: BinaryIO, offset: int) -> Iterator[TarMember]:
    """The rest of the archive from ``offset`` (a header), through tarfile (absolute offsets)."""
    f.seek(offset)
    with tarfile.open(fileobj=f, mode="r:") as tar:
        for info in tar:
            yield TarMember(info.name, info.offset_data, info.size, info.isfile())


# ---------------------------------------------------------------- the member index


def encode_index(table: np.ndarray) -> bytes:
    """int (N, M, 2) (data offset, size) per sample and member -> the bytes of a .idx file."""
    n, m, _ = table.shape
    return np.concatenate([np.array([INDEX_MAGIC, n, m], np.uint64), table.astype(np.uint64).ravel()]).astype("<u8").tobytes()


def decode_index(words: np.ndarray, count: int, members: int) -> np.ndarray:
    """uint64 words of a .idx file -> int64 (count, members, 2) (data offset, size).

    Raises:
        ValueError: not an index, or not one of ``count`` samples of ``members`` members.
    """
    if len(words) < INDEX_HEADER or int(words[0]) != INDEX_MAGIC:
        raise ValueError("not an fgbg member index")
    n, m = int(words[1]), int(words[2])
    if (n, m) != (count, members) or len(words) != INDEX_HEADER + n * m * 2:
        raise ValueError(f"an index of {n} x {m} members in {len(words) * 8} bytes, expected {count} x {members}")
    return words[INDEX_HEADER:].view("<i8").reshape(n, m, 2)
