"""The public API is importable from ``fgbg`` itself, and importing it is cheap."""

import subprocess
import sys

import fgbg


def test_every_public_name_resolves_to_the_object_in_its_module():
    for name in fgbg.__all__:
        assert getattr(fgbg, name) is not None, name
    from fgbg.make.generate import generate
    from fgbg.store.read import StoreReader

    assert fgbg.generate is generate and fgbg.StoreReader is StoreReader


def test_import_fgbg_loads_neither_torch_nor_lightning():
    code = "import sys, fgbg; fgbg.GenerateConfig(); print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
