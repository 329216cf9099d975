"""fgbg: synthetic foreground/background datasets with exact masks and depth.

Module map, in the order the data flows:

- ``assets``   read and prepare bg/fg folders (alpha, keying, trimming, resizing)
- ``plan``     every sample a config asks for, keys, shards
- ``compose``  placement sampling and alpha blending (pure numpy)
- ``depth``    depth sources (``layered``: bg map + fg layer at its foot)
- ``render``   one sample: composite + mask + depth, encoded
- ``store``    shard writers and readers per format, atomic writes
- ``generate`` plan -> workers -> store, with resume and progress
- ``pool``     one function per shard on spawned workers, with a progress bar
- ``stats``    exact per-kind, per-channel histograms -> stats.json (cached per shard)
- ``verify``   prove a store whole, or list every problem, one line each
- ``preview``  grids of each kind and aligned rows (numpy turbo colour map)
- ``card``     the dataset card: STORE/README.md and STORE/previews/
- ``data``     torch datasets over a store: split by bg/fg, paired augmentation, per-worker files
- ``model``    the two-head U-Net (mask logits, depth), checkpoint loading
- ``losses``   BCE + Dice for the mask, L1 + SSIM + gradient for depth
- ``metrics``  per-image IoU/Dice, depth RMSE/AbsRel/delta1/SSIM, the differencing baseline
- ``train``    Lightning training: checkpoints, TensorBoard, resume, budget, summary
- ``evaluate`` metrics.json, report.md and picture grids (``viz``) of a checkpoint
- ``predict``  masks and depth for images of any size (torch, or ONNX without torch)
- ``export``   ONNX export checked against torch
- ``demo``     the bundled demo assets and ``fgbg demo``
- ``cli``      the command line: parses and calls
"""

__version__ = "0.1.0"
