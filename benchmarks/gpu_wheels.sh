#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.py installs on a bare GPU machine (Python 3.12, Linux x86-64, no
# package index), downloaded into DIR on a machine that has one:
#
#     benchmarks/gpu_wheels.sh wheels/        # then carry wheels/ beside the tree (git ignores it)
#
# What the GPU machine lacks of fgbg's needs (it has torch, lightning, torchmetrics, transformers,
# onnxruntime, numpy, pillow, scipy): simplejpeg; moderngl and glcontext for `fgbg rooms`; pycocotools
# and opencv-python-headless; tensorboardX for Lightning's TensorBoard logger (tensorboard itself
# brings grpcio and more); pytest (iniconfig, pluggy, pygments), webdataset and braceexpand for the
# tests; setuptools only to build fgbg itself. No dependencies are followed (--no-deps): the
# machine's numpy, protobuf, PyYAML ... stay. Left out: onnx (17 MB; `fgbg export` only) and ray
# (the one cuda test on Ray actors fails without it). About 60 MB, most of it opencv: within the
# 64 MiB a device run carries. PYTHON_VERSION=3.11 downloads for another Python.
set -euo pipefail
dir=${1:?usage: benchmarks/gpu_wheels.sh DIR}
version=${PYTHON_VERSION:-3.12}
abi=cp${version/./}
mkdir -p "$dir"
python3 -m pip download --dest "$dir" --no-deps --only-binary=:all: \
    --python-version "$version" --implementation cp --abi "$abi" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    simplejpeg moderngl glcontext pycocotools opencv-python-headless tensorboardX \
    pytest iniconfig pluggy pygments webdataset braceexpand setuptools
ls -l "$dir"
