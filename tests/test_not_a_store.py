"""Every verb that reads a store says in one line (exit 2) when the folder is not one."""

import pytest

from fgbg.cli import main

READERS = [["stats"], ["verify"], ["card"], ["show", "--out", "x.png"], ["train", "--out", "run"]]


def one_error_line(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], (code, err)
    return err[0]


@pytest.mark.parametrize("verb", READERS, ids=lambda v: v[0])
def test_a_folder_that_is_not_a_store(tmp_path, capsys, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    line = one_error_line(capsys, [verb[0], "empty", *verb[1:]])
    assert "empty/dataset.json: not found" in line and "fgbg generate" in line


def test_an_unfinished_store_and_a_broken_dataset_json(tmp_path, capsys):
    (tmp_path / "unfinished" / ".work").mkdir(parents=True)
    assert "an unfinished store" in one_error_line(capsys, ["stats", str(tmp_path / "unfinished")])
    assert "an unfinished store" in one_error_line(capsys, ["verify", str(tmp_path / "unfinished")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset.json").write_text("{")
    assert "dataset.json: not valid JSON" in one_error_line(capsys, ["card", str(tmp_path / "broken")])
