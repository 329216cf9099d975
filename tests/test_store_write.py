import hashlib
import io
import tarfile

import numpy as np
import pytest

from fgbg.store.layout import MEMBERS
from fgbg.store.tarscan import decode_index
from fgbg.store.write import ustar_header, write_wds


@pytest.mark.parametrize("name,size", [("b000_f000_0_00.fg_bg.jpg", 12345), ("b1199_f001_1_149.json", 0), ("k.mask.png", 511)])
def test_ustar_header_is_what_tarfile_writes(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    assert ustar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def test_wds_shard_is_byte_identical_to_tarfile(tmp_path):
    samples = [(f"b000_f000_0_{k:02d}", {s: bytes([k]) * (100 * k + 7) for s in ("fg_bg.jpg", "mask.png", "depth.png", "json")})
               for k in range(5)]  # fmt: skip
    record = write_wds(tmp_path, "shard-000000", samples)
    ours = (tmp_path / "shards" / "shard-000000.tar").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
                tar.addfile(info, io.BytesIO(data))
    assert ours == buf.getvalue()
    index = (tmp_path / "shards" / "shard-000000.idx").read_bytes()
    assert record["count"] == 5 and record["bytes"] == len(ours) + len(index)
    assert record["files"] == {"shards/shard-000000.tar": hashlib.sha256(ours).hexdigest()}
    assert record["idx"] == {"shards/shard-000000.idx": hashlib.sha256(index).hexdigest()}


def test_wds_index_holds_the_offset_and_size_tarfile_finds_for_every_member(tmp_path):
    samples = [(f"b000_f000_0_{k:02d}", {s: bytes([k + i]) * (300 * k + 97 * i) for i, s in enumerate(MEMBERS)})
               for k in range(4)]  # fmt: skip
    write_wds(tmp_path, "shard-000000", samples)
    table = decode_index(np.fromfile(tmp_path / "shards" / "shard-000000.idx", "<u8"), 4, len(MEMBERS))
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar") as tar:
        found = [(info.offset_data, info.size) for info in tar]
    assert table.reshape(-1, 2).tolist() == [list(place) for place in found]
    assert not list((tmp_path / "shards").glob("*.tmp"))
