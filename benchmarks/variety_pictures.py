"""The variety options of `fgbg generate` side by side: README's picture docs/variety/options.png.

    python benchmarks/variety_pictures.py                    # writes docs/variety/options.png
    python benchmarks/variety_pictures.py --out /tmp/options.png --rows 3

One small store per option, made by the CLI from the bundled demo assets with the same seed and
flags otherwise (--size 128, two objects a composite). A column is an option, a row a sample key:
the composite with its mask outlined in yellow (the mask is the union of the objects' visible
pixels, alpha >= 128 of each turned object, whatever the blending). Where an option draws nothing
before the blend (``--blend MODE``, ``--light``, ``--harmonize``), a row shows the same layout as
``--blend hard``; ``--rotate``, ``--truncate`` and ``--variety`` draw their placements anew. The
distractors (other demo cut-outs) come after the objects, which keep their places: they are not outlined.

The PNG is reduced to a 256-colour palette to stay under 300 kB.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fgbg.cli import main  # noqa: E402
from fgbg.demo import demo_assets  # noqa: E402
from fgbg.store.read import StoreReader, decode_member  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--size", "128", "--fg-size", "80", "--scale", "0.6:1", "--objects", "2", "--placements", "1", "--no-flip",
        "--workers", "0", "--quiet"]  # fmt: skip
OPTIONS = {  # column title -> flags
    "plain (--blend hard)": [],
    "--rotate 30": ["--rotate", "30"],
    "--truncate 0.25": ["--truncate", "0.25"],
    "--blend gaussian": ["--blend", "gaussian"],
    "--blend motion": ["--blend", "motion"],
    "--blend poisson": ["--blend", "poisson"],
    "--light 0.3": ["--light", "0.3"],
    "--harmonize 1": ["--harmonize", "1"],
    "--distractors DIR": ["--distractors", "DIR", "--distractor-count", "2"],
    "--variety": ["--variety"],
}
# a few of the demo assets: row i shows bg i with fg i (sorted names), the other objects drawn from these fgs
BGS = ["dandelion_field.jpg", "hilltop_sunset.jpg", "living_room.jpg", "old_street.jpg"]
FGS = ["dog.png", "llama.png", "person_walking.png", "rooster.png", "elephant.png", "woman_dancing.png"]
DISTRACTORS = ["cactus.png", "potted_plant.png", "snowman.png"]  # pasted in no mask (--distractors DIR)


def demo_subset(folder: Path) -> tuple[Path, Path, Path]:
    """(bg, fg, distractor folders) under ``folder`` holding BGS, FGS and DISTRACTORS of the demo assets."""
    bg, fg = demo_assets()
    for names, source, name in ((BGS, bg, "bg"), (FGS, fg, "fg"), (DISTRACTORS, fg, "distractors")):
        (folder / name).mkdir()
        for file in names:
            shutil.copy(source / file, folder / name / file)
    return folder / "bg", folder / "fg", folder / "distractors"


def make_stores(folder: Path) -> dict[str, Path]:
    """A store per option under ``folder``, by title."""
    bg, fg, distractors = demo_subset(folder)
    stores = {}
    for i, (title, flags) in enumerate(OPTIONS.items()):
        flags = [str(distractors) if flag == "DIR" else flag for flag in flags]
        out = folder / f"option{i}"
        assert main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), *BASE, *flags]) == 0, title
        stores[title] = out
    return stores


def sample(store: Path, key: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(fg_bg uint8 (H, W, 3), mask uint8 (H, W), json) of one sample."""
    reader = StoreReader(store)
    try:
        members = reader.read(key)
        return tuple(decode_member(suffix, members[suffix]) for suffix in ("fg_bg.jpg", "mask.png", "json"))
    finally:
        reader.close()


def caption(annotation: dict) -> str:
    """What the sample's json records of its objects' draws: a line per object (angle, in-frame share, blend)."""
    lines = []
    for o in annotation["objects"]:
        said = [f"{round(o['rotate']):+d}°"] if "rotate" in o else []
        said += [f"in frame {o['in_frame']:.3f}"] if o["in_frame"] < 1 else []
        said += [o["blend"]] if o.get("blend", "hard") != "hard" else []
        lines.append(", ".join(said))
    if annotation.get("distractors"):
        lines.append(f"+ {len(annotation['distractors'])} distractors, in no mask")
    return "\n".join(line for line in lines if line)


def grid(stores: dict[str, Path], keys: list[str]) -> plt.Figure:
    fig, axes = plt.subplots(len(keys), len(stores), figsize=(1.45 * len(stores), 1.7 * len(keys)), squeeze=False)
    for col, (title, store) in enumerate(stores.items()):
        for row, key in enumerate(keys):
            fg_bg, mask, annotation = sample(store, key)
            ax = axes[row, col]
            ax.imshow(fg_bg)
            ax.contour(mask > 0, levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(caption(annotation), fontsize=5, labelpad=1)
            if row == 0:
                ax.set_title(title, fontsize=6.5)
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.3)
    return fig


def save_small_png(fig: plt.Figure, path: Path, dpi: int) -> int:
    """The figure as a 256-colour PNG at ``path``; its size in bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    image = Image.open(buffer).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path.stat().st_size


def main_cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "variety" / "options.png")
    p.add_argument("--rows", type=int, default=3, help=f"samples shown (bg i with fg i), at most {len(BGS)}")
    p.add_argument("--dpi", type=int, default=110)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        stores = make_stores(Path(folder))
        config = json.loads((stores["--variety"] / "dataset.json").read_text())["config"]
        print("--variety:", {k: config[k] for k in ("rotate_min", "rotate_max", "truncate", "blend", "light", "harmonize")})
        fig = grid(stores, [f"b{i:03d}_f{i:03d}_0_00" for i in range(a.rows)])
        size = save_small_png(fig, a.out, a.dpi)
        plt.close(fig)
    print(f"picture: {a.out} ({size / 1000:.0f} kB)")


if __name__ == "__main__":
    main_cli()
