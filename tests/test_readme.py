"""README as a new user reads it: its snippets run as printed, on stores like the ones it describes."""

import contextlib
import gc
import re
import warnings
from pathlib import Path

import pytest

from fgbg.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
# webdataset (1.0.2, and its main branch) never closes the shard files its url_opener opens: its
# tar_file_expander drops them for the garbage collector, which warns (upstream issue #311; the fix,
# PR #312, was not merged). fgbg's own readers close theirs; webdataset's are closed here, by
# collecting them before the test ends, hearing only that one warning.
WEBDATASET_SHARD_LEAK = "unclosed file <_io.BufferedReader name='data/shards/shard-"


@contextlib.contextmanager
def webdatasets_shard_files_closed():
    """Run the block, then close the shard files webdataset left open (by collecting them), ignoring
    only the warning about those files."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", re.escape(WEBDATASET_SHARD_LEAK), ResourceWarning)
        yield
        gc.collect()


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
        with webdatasets_shard_files_closed():
            exec(compile(snippet, "README.md", "exec"), namespace)  # as printed, in the folder that holds data/
            keys = [sample["__key__"] for sample in namespace["ds"]]
    assert len(keys) == len(set(keys)) == 54 and namespace["key"] == keys[-1]  # its loop went through them all


def test_generate_prints_the_stores_own_brace_pattern_and_it_reads_the_store(seven_shards):
    wds = pytest.importorskip("webdataset")
    line = next(line for line in seven_shards if "webdataset.WebDataset(" in line)
    pattern = re.search(r'WebDataset\("([^"]+)"', line)[1]
    assert pattern == "data/shards/shard-{000000..000006}.tar" and "shardshuffle=False" in line
    with webdatasets_shard_files_closed():
        assert len({s["__key__"] for s in wds.WebDataset(pattern, shardshuffle=False)}) == 54


def test_readmes_iter_samples_loop_runs_as_printed(seven_shards):
    loop = re.search(r"`(for key, sample in fgbg\.iter_samples\(path\))`", README.read_text())[1]
    import fgbg

    seen = []
    exec(f"{loop}:\n    seen.append((key, sample))", {"fgbg": fgbg, "path": Path("data"), "seen": seen})
    assert len(seen) == 54 and all(isinstance(k, str) and "fg_bg.jpg" in s for k, s in seen)


def test_readmes_exception_for_train_workers_is_the_default(monkeypatch):
    """README: absent --workers in `fgbg train` is 0 on a CPU of 2 cores or fewer, 1 on more."""
    from fgbg.learn.train import default_loader_workers

    text = " ".join(README.read_text().split())
    assert "in `fgbg train` it counts DataLoader processes per training process, and absent means 0 on a CPU with 2 cores or fewer" in text
    for cores, workers in ((1, 0), (2, 0), (4, 1), (16, 1)):
        monkeypatch.setattr("os.cpu_count", lambda: cores)
        assert default_loader_workers() == workers, cores


def test_readmes_variety_row_spells_out_what_variety_turns_on():
    """README's `--variety` row lists flags that give the very config `--variety` gives."""
    from fgbg.cli import build_parser, variety_from_args

    row = next(line for line in README.read_text().splitlines() if line.startswith("| `--variety` |"))
    spelled = re.search(r"the mix measured best: `([^`]+)`", row)[1].split()
    parse = lambda *flags: variety_from_args(build_parser().parse_args(["generate", "--bg", "b", "--fg", "f", "--out", "o", *flags]))  # noqa: E731
    assert parse(*spelled) == parse("--variety") != parse()


def test_readmes_pictures_exist_and_stay_small():
    pictures = re.findall(r"!\[[^\]]*\]\((docs/[^)]+)\)", README.read_text())
    assert "docs/variety/options.png" in pictures
    for picture in pictures:
        path = README.parent / picture
        assert path.is_file() and path.stat().st_size < 300_000, picture
