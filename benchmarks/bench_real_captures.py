"""Pictures of models on real captures: a bg shifted by 2 px, and OpenCV's vtest.avi, a real video.

    python benchmarks/bench_real_captures.py --after RUN/best.ckpt [--before RUN_NONE/best.ckpt] \\
        [--store HELD_OUT_STORE] [--rooms 24 --fg HELD_OUT_FG_DIR] [--scale 0.5] [--frame 100] [--out /tmp/real-captures] [--docs docs/real-captures]

``--after`` (and ``--before``, e.g. a ``--bg-aug none`` run of benchmarks/bench_train.py) are
checkpoints; ``--store`` a store of held-out composites (bench_train's held-out-store).

1. Shifted bg (with --store): the first samples of the store with the bg input moved 2 px
   (``fgbg evaluate``'s "shift 2 px"), rows of bg | composite | true mask | each model's mask |
   differencing, written to DOCS/shifted-bg.png.
2. Retakes (with --rooms N --fg DIR): ``fgbg rooms --retake`` renders N rooms (numpy ray caster) and
   each again from a second handheld pose; a store of DIR's foregrounds on the first views; each
   model evaluated with the store's bg input and with the retake as the bg input
   (``fgbg evaluate --bg-from ROOMS/retake``): a misalignment with parallax, exact masks. Printed as a table.
3. vtest.avi: OpenCV's sample video (768 x 576, a static camera over a plaza, people walking), from
   Debian's opencv-doc (``apt-get update``, ``apt-get download opencv-doc``, ``dpkg -x`` into OUT; never
   in the tests). The bg is the per-pixel median of its frames; each model scores frame FRAME against
   it with ``fgbg predict --scale SCALE`` (a 70-px walker at 0.5 is 35 px, as the objects of a 96-px
   training set are); beside it OpenCV's MOG2 background subtractor (fed frames 0..FRAME, shadows
   left out) and plain differencing at the model's baseline threshold. Panels: frame | each model |
   MOG2 | differencing, written to DOCS/vtest-frame100.png. There is no ground truth: it is a picture,
   and the script prints the share of pixels each marks and its count of blobs over 100 px.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from fgbg.learn.data import StoreDataset
from fgbg.config import GenerateConfig
from fgbg.learn.evaluate import evaluate, infer
from fgbg.make.generate import generate
from fgbg.rooms.write import render_rooms
from fgbg.learn.metrics import baseline_mask
from fgbg.learn.model import inference_net, read_checkpoint
from fgbg.learn.perturb import ROBUSTNESS, perturb_bg
from fgbg.engine.devices import cpu_device

VTEST = Path("usr/share/doc/opencv-doc/examples/data/vtest.avi")  # inside the extracted package
PANEL_W = 320  # each panel of the video picture, 320 x 240


def vtest_frames(work: Path) -> list[np.ndarray]:
    """Every frame of vtest.avi as RGB uint8 (576, 768, 3), its package downloaded and extracted into ``work`` once."""
    video = work / "opencv-doc" / VTEST
    if not video.exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "download", "opencv-doc"], cwd=work, check=True)
        deb = max(work.glob("opencv-doc_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(work / "opencv-doc")], check=True)
    capture, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def mog2_mask(frames: list[np.ndarray], upto: int) -> np.ndarray:
    """OpenCV's MOG2 background subtractor fed frames 0..upto: bool (H, W) of frame ``upto``, shadows (127) as background."""
    mog = cv2.createBackgroundSubtractorMOG2()
    for f in frames[: upto + 1]:
        mask = mog.apply(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return mask > 200


def predicted_mask(model: Path, bg: Path, frame: Path, out: Path, scale: float) -> np.ndarray:
    """``fgbg predict MODEL --bg BG --fg-bg FRAME --scale SCALE``: bool (H, W)."""
    subprocess.run([str(Path(sys.executable).parent / "fgbg"), "predict", str(model), "--bg", str(bg), "--fg-bg", str(frame), "--out", str(out),
                    "--scale", str(scale), "--device", "cpu", "--quiet"], check=True)  # fmt: skip
    return np.asarray(Image.open(out / f"{frame.stem}.mask.png")) > 127


def blobs(mask: np.ndarray, min_area: int = 100) -> int:
    """Connected regions of at least ``min_area`` pixels."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    return int((stats[1:, cv2.CC_STAT_AREA] >= min_area).sum())


def labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """uint8 RGB panel with ``text`` on a black band at its top."""
    img = Image.fromarray(panel)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, img.width, 14), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(img)


def as_panel(x: np.ndarray, width: int) -> np.ndarray:
    """A bool mask or RGB image -> uint8 RGB ``width`` wide, the aspect kept."""
    rgb = np.repeat((x * 255).astype(np.uint8)[..., None], 3, 2) if x.dtype == bool else x
    h = round(rgb.shape[0] * width / rgb.shape[1])
    return np.asarray(Image.fromarray(rgb).resize((width, h), Image.BILINEAR if x.dtype != bool else Image.NEAREST))


def row(panels: list[np.ndarray], pad: int = 4) -> np.ndarray:
    parts = []
    for p in panels:
        parts += [p, np.full((p.shape[0], pad, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def baseline_threshold(model: Path) -> float:
    return float(read_checkpoint(model)["hyper_parameters"]["meta"]["baseline"]["threshold"])


def video_picture(models: dict[str, Path], work: Path, docs: Path, frame_index: int, scale: float) -> None:
    frames = vtest_frames(work / "deb")
    bg = np.median(np.stack(frames[::3]), axis=0).astype(np.uint8)  # every 3rd frame: the same median, a third of the memory
    frame = frames[frame_index]
    folder = work / "vtest"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(bg).save(folder / "median_bg.png")
    Image.fromarray(frame).save(folder / f"frame{frame_index:03d}.png")
    masks = {name: predicted_mask(m, folder / "median_bg.png", folder / f"frame{frame_index:03d}.png", work / f"pred-{name}", scale) for name, m in models.items()}
    masks["OpenCV MOG2"] = mog2_mask(frames, frame_index)
    threshold = baseline_threshold(next(iter(models.values())))
    diff = baseline_mask(torch.from_numpy(bg).permute(2, 0, 1)[None] / 255.0, torch.from_numpy(frame).permute(2, 0, 1)[None] / 255.0, threshold)
    masks[f"differencing > {threshold:.2f}"] = diff[0, 0].numpy().astype(bool)
    panels = [labelled(as_panel(frame, PANEL_W), f"vtest.avi frame {frame_index}")]
    panels += [labelled(as_panel(m, PANEL_W), name) for name, m in masks.items()]
    docs.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row(panels)).save(docs / f"vtest-frame{frame_index}.png", optimize=True)
    print(f"vtest.avi: {len(frames)} frames of {frame.shape[1]}x{frame.shape[0]}; bg = per-pixel median; frame {frame_index} at --scale {scale}")
    for name, m in masks.items():
        print(f"  {name:<28} marks {100 * m.mean():5.1f}% of the frame, {blobs(m)} blobs of 100 px or more")
    print(f"picture: {docs / f'vtest-frame{frame_index}.png'}")


@torch.inference_mode()
def shifted_picture(models: dict[str, Path], store: Path, docs: Path, rows: int = 4) -> None:
    shift = next(p for p in ROBUSTNESS if p.name == "shift 2 px")
    nets = {name: inference_net(m) for name, m in models.items()}
    size = next(iter(nets.values()))[1]["train"]["size"]
    dataset = StoreDataset(store, list(range(rows)), size, normalized=False)
    batch = dataset.prepare(torch.utils.data.default_collate([dataset[i] for i in range(rows)]))
    bg = perturb_bg(batch["bg"], batch["index"], shift)
    masks = {name: torch.sigmoid(infer(net, bg, batch["fg_bg"], cpu_device()).mask_logits) > 0.5 for name, (net, _) in nets.items()}
    masks["differencing"] = baseline_mask(bg, batch["fg_bg"], next(iter(nets.values()))[1]["baseline"]["threshold"])
    width = 2 * size
    lines = []
    for i in range(rows):
        panels = [as_panel((bg[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), width), as_panel((batch["fg_bg"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), width),
                  as_panel(batch["mask"][i, 0].numpy() > 0.5, width)] + [as_panel(m[i, 0].numpy(), width) for m in masks.values()]  # fmt: skip
        if i == 0:
            panels = [labelled(p, t) for p, t in zip(panels, ["bg shifted 2 px", "composite", "true mask", *masks])]
        lines.append(row(panels))
    docs.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([np.pad(line, ((0, 4), (0, 0), (0, 0)), constant_values=255) for line in lines])).save(docs / "shifted-bg.png", optimize=True)
    print(f"picture: {docs / 'shifted-bg.png'}")


def retake_report(models: dict[str, Path], work: Path, fg: Path, count: int) -> None:
    """Each model on rendered rooms with the bg input from the first view and from the retake (see the module's docstring)."""
    size = read_checkpoint(next(iter(models.values())))["hyper_parameters"]["meta"]["train"]["size"]
    rooms, store = work / f"rooms-{size}", work / f"rooms-store-{size}"
    render_rooms(rooms, count, size, renderer="numpy", progress=False, retake=True, workers=0)
    if not (store / "dataset.json").exists():
        generate(rooms, fg, store, GenerateConfig(size=size, fg_size=size // 2, placements=2), progress=False)
    print(f"rendered rooms, {count} rooms x the foregrounds of {fg} at {size} px; bg input: the first view | the retake (2-6 cm, < 1 degree away)")
    print("| model | mask IoU, first view | mask IoU, retake | differencing, first view | differencing, retake | depth delta1, first view | depth delta1, retake |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, model in models.items():
        same = evaluate(model, store, work / f"eval-rooms-{name}", log=lambda _: None, progress=False, robustness="none", device="cpu")
        again = evaluate(model, store, work / f"eval-retake-{name}", log=lambda _: None, progress=False, bg_from=rooms / "retake", device="cpu")
        print(f"| {name} | {same['mask_iou']:.4f} | {again['mask_iou']:.4f} | {same['baseline_mask_iou']:.4f} | {again['baseline_mask_iou']:.4f}"
              f" | {same['depth_delta1']:.4f} | {again['depth_delta1']:.4f} |")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--after", type=Path, required=True, help="a checkpoint trained with --bg-aug real")
    p.add_argument("--before", type=Path, default=None, help="a checkpoint trained with --bg-aug none")
    p.add_argument("--store", type=Path, default=None, help="held-out composites for the shifted-bg picture")
    p.add_argument("--rooms", type=int, default=0, help="rooms to render for the retake report (0: none)")
    p.add_argument("--fg", type=Path, default=None, help="foregrounds for the rooms store (e.g. bench_train's OUT/assets/held-out-fg)")
    p.add_argument("--no-video", action="store_true", help="leave out vtest.avi")
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--frame", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("/tmp/real-captures"))
    p.add_argument("--docs", type=Path, default=Path("docs/real-captures"))
    args = p.parse_args()
    models = {**({"model, --bg-aug none": args.before} if args.before else {}), "model, --bg-aug real": args.after}
    if args.store:
        shifted_picture(models, args.store, args.docs)
    if args.rooms:
        retake_report(models, args.out, args.fg, args.rooms)
    if not args.no_video:
        video_picture(models, args.out, args.docs, args.frame, args.scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
