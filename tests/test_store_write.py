import io
import tarfile

import pytest

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
    assert record["count"] == 5 and record["bytes"] == len(ours)
