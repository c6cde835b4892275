"""Encoder throughput: frames per second of the Sora pooling encoder on a device, against the CPU in the same run.

    python benchmarks/speed/encoder_throughput.py                      # the default device (CUDA when available)
    python benchmarks/speed/encoder_throughput.py --device cuda --batch 128 256 512 --cudnn-benchmark

Frames are 224x224 uint8 RGB, what the indexer hands the encoder (the cost of a convolutional network does not
depend on the pixels, so they are random). Each batch size is timed through the public ``Encoder.embed``, which is
the whole path the indexer pays: host-to-device copy, the network (fp16 autocast on CUDA), pooling, copy back and
L2 normalisation. After two warm-up batches, batches run until ``--seconds`` have passed. The baseline is the same
encoder on the CPU at its default batch size, timed in the same run; on CUDA the run also reports how close the fp16
descriptors are to the CPU's float32 ones (cosine of each frame's two vectors).

The GPU target is >= 3,000 frames/s in fp16 on one GPU. Writes ``benchmarks/results/encoder_throughput.json``.

``--int8`` adds the int8 CPU build against float32 on the CPU, in the same process and threads, alternating
``--rounds`` times (the median of each is reported, so a neighbour's load hits both alike), and the per-frame cosine of
the two builds' vectors on real frames: ``--media FILE...`` decoded to ``--media-frames`` frames each, evenly spread.
``--bf16`` does the same for the bfloat16 build.

    python benchmarks/speed/encoder_throughput.py --device cpu --batch 8 --bf16 --int8 --media a.mp4 b.avi c.mpg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

GPU_TARGET_FPS = 3000.0


def frames_per_second(encoder: Any, frames: np.ndarray, batch: int, seconds: float) -> dict[str, Any]:
    """Time ``encoder.embed`` on ``batch`` frames at a time for at least ``seconds`` after two warm-up batches."""
    encoder.batch_size = batch
    chunk = frames[:batch]
    for _ in range(2):
        encoder.embed(chunk)
    done, batches = 0, 0
    start = time.perf_counter()
    while True:
        encoder.embed(chunk)  # returns a NumPy array: the device has finished
        done += len(chunk)
        batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and batches >= 2:
            break
    return {"batch": batch, "frames": done, "seconds": round(elapsed, 3), "frames_per_s": round(done / elapsed, 1)}


def first_calls(encoder: Any, frames: np.ndarray) -> dict[str, float]:
    """Seconds of the encoder's first call (CUDA's start), then of one call at each of a few short batch sizes not
    seen before: a file's last batch has such a size, and a backend that prepares kernels per shape pays it there."""
    out = {}
    for n in (8, 3, 13, 29, 57, 100):
        start = time.perf_counter()
        encoder.embed(frames[:n])
        out[str(n)] = round(time.perf_counter() - start, 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="sora-lite0")
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    ap.add_argument("--batch", type=int, nargs="+", default=None,
                    help="batch sizes to time (default: 8 16 32 on CPU, 64 128 256 512 on CUDA)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time each batch size for at least this long")
    ap.add_argument("--cpu-seconds", type=float, default=5.0, help="time the CPU baseline for at least this long")
    ap.add_argument("--cpu-batch", type=int, default=8, help="the CPU baseline's batch size (the CPU default)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="set torch.backends.cudnn.benchmark first")
    ap.add_argument("--int8", action="store_true", help="also time the int8 CPU build against float32 (CPU)")
    ap.add_argument("--bf16", action="store_true", help="also time the bf16 CPU build against float32 (CPU)")
    ap.add_argument("--rounds", type=int, default=5, help="alternations of float32 and int8 (or bf16) timing")
    ap.add_argument("--media", type=Path, nargs="*", default=[], help="videos whose frames the cosine is taken on")
    ap.add_argument("--media-frames", type=int, default=100, help="frames per --media file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results"
                    / "encoder_throughput.json")
    args = ap.parse_args(argv)

    from sora_search.encoder import encoder_identity, load_encoder

    # Loaded before this script imports torch, so that torch starts with the library's settings (see load_encoder).
    encoder = load_encoder(args.encoder, device=args.device)
    import torch

    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    on_cuda = encoder.device.startswith("cuda")
    batches = args.batch or ([64, 128, 256, 512] if on_cuda else [8, 16, 32])
    side = encoder_identity(args.encoder).input_size
    rng = np.random.default_rng(args.seed)
    frames = rng.integers(0, 256, (max(batches + [args.cpu_batch]), side, side, 3), dtype=np.uint8)

    cold = first_calls(encoder, frames) if on_cuda else None
    rows = [frames_per_second(encoder, frames, b, args.seconds) for b in batches]
    cpu = load_encoder(args.encoder, device="cpu") if on_cuda else encoder
    cpu_batch = args.cpu_batch
    same = [r for r in rows if r["batch"] == cpu_batch and not on_cuda]
    baseline = same[0] if same else frames_per_second(cpu, frames, cpu_batch, args.cpu_seconds)
    best = max(rows, key=lambda r: r["frames_per_s"])
    result: dict[str, Any] = {
        "encoder": args.encoder,
        "device": encoder.device,
        "device_name": torch.cuda.get_device_name(encoder.device) if on_cuda else platform.processor() or "cpu",
        "precision": "fp16 autocast" if on_cuda else "float32",
        "cudnn_benchmark": bool(args.cudnn_benchmark),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "batches": rows,
        "cpu_baseline": baseline,
        "best": best,
        "speedup_vs_cpu": round(best["frames_per_s"] / baseline["frames_per_s"], 2),
    }
    if on_cuda:
        check = frames[:64]
        encoder.batch_size = 64
        cos = np.sum(encoder.embed(check) * cpu.embed(check), axis=1)
        result["fp16_vs_cpu_cosine"] = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}
        result["first_calls_s"] = cold
        result["gpu_target_fps"] = GPU_TARGET_FPS
        result["gpu_target_met"] = best["frames_per_s"] >= GPU_TARGET_FPS

    for precision in ("bf16", "int8"):
        if getattr(args, precision):
            result[precision] = reduced_vs_fp32(args, frames, precision)

    print(f"{args.encoder} on {result['device']} ({result['device_name']}, {result['precision']}):")
    for r in rows:
        print(f"  batch {r['batch']:4d}: {r['frames_per_s']:9.1f} frames/s  ({r['frames']} frames in {r['seconds']} s)")
    print(f"  CPU baseline, batch {cpu_batch}, {result['torch_threads']} torch threads: "
          f"{baseline['frames_per_s']:.1f} frames/s")
    print(f"  best: {best['frames_per_s']:.1f} frames/s at batch {best['batch']}, "
          f"{result['speedup_vs_cpu']}x the CPU")
    if on_cuda:
        c = result["fp16_vs_cpu_cosine"]
        print(f"  fp16 vs CPU float32 descriptors: cosine min {c['min']}, mean {c['mean']}")
        print("  first calls (CUDA start, then short batches of new sizes): "
              + ", ".join(f"{n} frames {t * 1000:.0f} ms" for n, t in (cold or {}).items()))
        print(f"  target >= {GPU_TARGET_FPS:.0f} frames/s in fp16: {'met' if result['gpu_target_met'] else 'NOT met'}")
    for precision in ("bf16", "int8"):
        if precision not in result:
            continue
        q = result[precision]
        print(f"  {precision} vs float32 on the CPU, batch {args.cpu_batch}, median of {args.rounds} alternating "
              f"rounds: {q[precision + '_frames_per_s']:.1f} vs {q['fp32_frames_per_s']:.1f} frames/s "
              f"({q['speedup']}x); {precision} build {q['build_s']} s")
        c = q["cosine"]
        print(f"  {precision} vs float32 cosine on {c['frames']} {c['frames_from']} frames: min {c['min']}, "
              f"p1 {c['p1']}, mean {c['mean']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return result


def media_frames(paths: list[Path], per_file: int, side: int) -> np.ndarray:
    """``per_file`` frames of each video, evenly spread over it, (n, side, side, 3) uint8."""
    from sora_search.decode import open_video

    parts = []
    for path in paths:
        with open_video(path) as reader:
            fps = max(1.0, 2.0 * per_file / max(reader.info.duration_s, 1e-3))
            got = np.concatenate([b.frames for b in reader.sample(fps=fps, size=side)])
        parts.append(got[np.linspace(0, len(got) - 1, min(per_file, len(got))).astype(int)])
    return np.concatenate(parts)


def reduced_vs_fp32(args: argparse.Namespace, frames: np.ndarray, precision: str) -> dict[str, Any]:
    """Frames/s of the float32 and the ``precision`` (bf16, int8) CPU builds, alternating, and the cosine of their
    vectors."""
    from sora_search.encoder import encoder_identity, load_encoder

    fp32 = load_encoder(args.encoder, device="cpu", batch_size=args.cpu_batch)
    start = time.perf_counter()
    other = load_encoder(args.encoder, device="cpu", batch_size=args.cpu_batch, precision=precision)
    build_s = time.perf_counter() - start
    rates: dict[str, list[float]] = {"fp32": [], precision: []}
    for _ in range(args.rounds):
        for name, enc in (("fp32", fp32), (precision, other)):
            rates[name].append(frames_per_second(enc, frames, args.cpu_batch, args.cpu_seconds)["frames_per_s"])
    side = encoder_identity(args.encoder).input_size
    real = media_frames(list(args.media), args.media_frames, side) if args.media else frames
    cos = np.sum(fp32.embed(real) * other.embed(real), axis=1)
    f32, fast = float(np.median(rates["fp32"])), float(np.median(rates[precision]))
    return {"fp32_frames_per_s": round(f32, 1), f"{precision}_frames_per_s": round(fast, 1),
            "speedup": round(fast / f32, 2), "rounds": rates, "build_s": round(build_s, 2),
            "cosine": {"frames": len(cos), "frames_from": "real" if args.media else "random",
                       "media": [str(p) for p in args.media], "min": round(float(cos.min()), 4),
                       "p1": round(float(np.percentile(cos, 1)), 4), "mean": round(float(cos.mean()), 4)}}


if __name__ == "__main__":
    main()
