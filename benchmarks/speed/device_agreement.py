"""The same files indexed and queried on the CPU and on CUDA in one run: time per stage, and whether they agree.

    python benchmarks/speed/device_agreement.py --files LIB... --queries CLIP... [--out results.json]

Each device indexes ``--files`` into a fresh index through the public API (the CPU first, then CUDA), and reports
wall time, video-seconds per second and the per-stage breakdown: ``decode`` is time spent waiting for the decode
worker, so a run whose decode wait outweighs its encode time is decode-bound. Then it compares the two indexes:
the cosine of each stored vector with the other device's vector for the same video and second (CUDA runs the
encoder in fp16, the CPU in float32), and each ``--queries`` clip's answers (the same videos in the same order, the
largest score difference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def run_device(device: str, root: Path, files: list[Path], queries: list[Path]) -> dict[str, Any]:
    from sora_search import Library
    from sora_search.errors import VideoError

    with Library.open(root / device, device=device) as lib:
        start = time.perf_counter()
        summary = lib.index(files)
        index_s = time.perf_counter() - start
        info = lib.info()
        answers = {}
        query_s = []
        for clip in queries:
            q0 = time.perf_counter()
            try:
                result = lib.query(clip)
            except VideoError as e:  # a clip this machine cannot decode is reported, not fatal
                print(f"{device}: {clip}: {e}", file=sys.stderr)
                continue
            query_s.append(time.perf_counter() - q0)
            answers[str(clip)] = [(Path(m.path).name, m.score) for m in result.matches]
    stages = {k: round(v, 2) for k, v in sorted(summary.timings.items())}
    print(f"{device}: {info.videos} videos, {info.duration_s:.0f} s of video in {index_s:.1f} s "
          f"({info.duration_s / index_s:.1f} video-s/s); stages: " + ", ".join(f"{k} {v} s" for k, v in stages.items()))
    return {"index_s": round(index_s, 2), "video_s": info.duration_s, "video_s_per_s": info.duration_s / index_s,
            "vectors": info.vectors, "failed": len(summary.failed), "stages_s": stages,
            "faiss_device": info.index_device, "query_s": [round(q, 3) for q in query_s], "answers": answers}


def stored_vectors(path: Path) -> dict[tuple[str, float], np.ndarray]:
    from sora_search.store import Store
    from sora_search.store.catalogue import DB_NAME

    out = {}
    with Store.open(path / DB_NAME, create=False) as store:
        for video in store.videos(status="indexed"):
            _, times, vectors = store.vectors_of_video(video.id)
            for t, v in zip(times, vectors):
                out[(Path(video.path).name, round(float(t), 3))] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=Path, nargs="+", required=True, help="videos (or folders) to index")
    ap.add_argument("--queries", type=Path, nargs="*", default=[], help="clips to query both indexes with")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/device_agreement.json"))
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark compares the CPU with CUDA")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = {d: run_device(d, root, args.files, args.queries) for d in ("cpu", "cuda")}
        cpu, gpu = stored_vectors(root / "cpu"), stored_vectors(root / "cuda")
    shared = sorted(set(cpu) & set(gpu))
    cos = np.array([float(np.dot(cpu[k], gpu[k]) / (np.linalg.norm(cpu[k]) * np.linalg.norm(gpu[k]) + 1e-12))
                    for k in shared])
    same_order, worst_score = 0, 0.0
    for clip, want in runs["cpu"]["answers"].items():
        got = runs["cuda"]["answers"].get(clip, [])
        same_order += [n for n, _ in want] == [n for n, _ in got]
        for (n1, s1), (n2, s2) in zip(want, got):
            if n1 == n2:
                worst_score = max(worst_score, abs(s1 - s2))
    result = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cpu_count": os.cpu_count(), "runs": runs,
        "vectors_compared": len(shared), "vectors_cpu": len(cpu), "vectors_cuda": len(gpu),
        "cosine_min": float(cos.min()) if len(cos) else None, "cosine_mean": float(cos.mean()) if len(cos) else None,
        "queries": len(runs["cpu"]["answers"]), "queries_same_order": same_order, "largest_score_difference": worst_score,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"stored vectors, CUDA fp16 against CPU float32: {len(shared)} compared "
          f"({len(cpu)} CPU, {len(gpu)} CUDA), cosine min {result['cosine_min']:.5f}, mean {result['cosine_mean']:.5f}")
    print(f"queries: {same_order}/{result['queries']} with the same videos in the same order on both; "
          f"largest score difference {worst_score:.4f}")
    for device, run in runs.items():
        encode = run["stages_s"].get("encode", 0.0)
        decode = run["stages_s"].get("decode", 0.0)
        print(f"{device}: decode wait {decode} s against encode {encode} s: "
              + ("decode-bound" if decode > encode else "encode-bound"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
