"""README as a new user reads it: its snippets run as printed, on stores like the ones it describes."""

import re
import warnings
from pathlib import Path

import pytest

from fgbg.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, in order."""
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture
def seven_shards(folders, tmp_path, monkeypatch, capsys):
    """`fgbg generate` of a 7-shard store at ./data (3 x 3 x 2 x 3 = 54 samples, 8 a shard), as README's
    commands make it; the lines it printed."""
    bg, fg = folders
    monkeypatch.chdir(tmp_path)
    argv = ["generate", "--bg", str(bg), "--fg", str(fg), "--out", "data", "--size", "64", "--fg-size", "32",
            "--placements", "3", "--shard-size", "8", "--workers", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert len(list(Path("data/shards").glob("*.tar"))) == 7
    return capsys.readouterr().out.splitlines()


def test_readmes_webdataset_snippet_reads_every_sample_of_a_7_shard_store_as_printed(seven_shards):
    pytest.importorskip("webdataset")
    snippet = next(block for block in python_blocks(README.read_text()) if "import webdataset" in block)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shardshuffle warning either
        exec(compile(snippet, "README.md", "exec"), namespace)  # as printed, in the folder that holds data/
        keys = [sample["__key__"] for sample in namespace["ds"]]
    assert len(keys) == len(set(keys)) == 54 and namespace["key"] == keys[-1]  # its loop went through them all


def test_generate_prints_the_stores_own_brace_pattern_and_it_reads_the_store(seven_shards):
    wds = pytest.importorskip("webdataset")
    line = next(line for line in seven_shards if "webdataset.WebDataset(" in line)
    pattern = re.search(r'WebDataset\("([^"]+)"', line)[1]
    assert pattern == "data/shards/shard-{000000..000006}.tar" and "shardshuffle=False" in line
    assert len({s["__key__"] for s in wds.WebDataset(pattern, shardshuffle=False)}) == 54
