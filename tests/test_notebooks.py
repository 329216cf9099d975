"""The example notebooks run top to bottom (on the bundled demo assets), so they never rot; they are kept
without outputs, so none can be stale."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = ["01_create_dataset.ipynb", "02_statistics.ipynb", "03_several_objects.ipynb", "04_variety.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    saved = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))]
    assert not saved, f"cells {saved} saved with outputs, which go stale: clear them (running the notebook, here, makes them)"
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "demo-data" / "dataset.json").exists()
    if name.startswith("03"):  # the COCO export loaded and drawn by pycocotools
        assert (tmp_path / "demo-coco" / "annotations" / "instances_train.json").exists() and (tmp_path / "show_anns.png").exists()
    if name.startswith("04"):  # a store per option drawn side by side, and the --blend-each siblings
        assert (tmp_path / "variety.png").exists() and (tmp_path / "blend_each.png").exists()
    if name.startswith("02"):
        assert (tmp_path / "demo-data" / "README.md").exists() and (tmp_path / "demo-data" / "stats.json").exists()
