"""Indexing on a local Ray cluster against one process, on the same files, measured in one run.

    python benchmarks/speed/ray_scaling.py --media /path/to/media-cache/media [--seconds 150] [--workers 1 2]

Picks files from ``video_real/``, then ``video_animated/`` and ``video_derived/`` (each sorted by path) until they
hold ``--seconds`` of video, indexes them into a fresh index in this process (``Library.index``), then once per
``--workers`` value on a fresh local Ray cluster of ``workers + 1`` logical CPUs: ``workers`` CPU encoder actors
(``RayParams.encoders``, one CPU and one torch thread each) and one decode task at a time (``Library.index(...,
ray="auto")``). Reports, for each run, the wall time of the index call (the cluster already up, its start time
apart), the overhead ratio against one process (run first and again last; the faster is the baseline), the
worker-seconds spent decoding and encoding, and the driver's seconds committing (store, FAISS), from which the
decode rate per decode task and the commit rate are derived. All runs use the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def pick(media: Path, seconds: float) -> tuple[list[Path], float]:
    import av

    from sora_search.scan import walk

    chosen, total = [], 0.0
    entries = [e for folder in ("video_real", "video_animated", "video_derived") for e in walk([media / folder]).files]
    for entry in entries:
        try:
            with av.open(entry.path) as c:
                duration = float(c.duration or 0) / 1e6
        except Exception:
            continue
        if duration <= 0:
            continue
        chosen.append(Path(entry.path))
        total += duration
        if total >= seconds:
            break
    return chosen, total


def run(files: list[Path], workers: int | None) -> dict[str, object]:
    from sora_search import Library
    from sora_search.params import IndexParams, RayParams

    started_s = 0.0
    if workers:
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
        started_s = time.perf_counter() - t
    try:
        params = IndexParams(ray=RayParams(encoders=workers or 0))
        with tempfile.TemporaryDirectory() as tmp, Library.open(Path(tmp) / "idx", device="cpu",
                                                                params=params) as lib:
            t = time.perf_counter()
            summary = lib.index(files, ray="auto" if workers else None)
            wall = time.perf_counter() - t
    finally:
        if workers:
            ray.shutdown()
    assert not summary.failed, summary.failed
    return {"workers": workers or 0, "cluster_start_s": round(started_s, 2), "wall_s": round(wall, 2),
            "videos": len(summary.added), "vectors": summary.vectors_added,
            "timings": {k: round(v, 2) for k, v in summary.timings.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, required=True, help="the media/ folder made by benchmarks/fetch_media.sh")
    ap.add_argument("--seconds", type=float, default=150.0, help="video seconds to index")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="encoder actors of each Ray run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_scaling.json"))
    args = ap.parse_args()

    files, total = pick(args.media, args.seconds)
    load = os.getloadavg()
    # One process first and again last: the first run of a session pays cold imports (torch from disk) that every
    # later run, Ray's actors included, finds in the page cache; the baseline is the faster of the two.
    runs = [run(files, None)] + [run(files, w) for w in args.workers] + [run(files, None)]
    base = min(float(r["wall_s"]) for r in runs if not r["workers"])  # type: ignore[arg-type]
    for r in runs:
        r["ratio"] = round(float(r["wall_s"]) / base, 2)  # type: ignore[arg-type]
        t = r["timings"]
        assert isinstance(t, dict)
        # On Ray "decode" is worker-seconds in decode tasks (one core each); in one process it is only the wait.
        r["decode_frames_per_core_s"] = round(int(r["vectors"]) / t["decode"], 1) if r["workers"] else None
        commit = t.get("store", 0) + t.get("index", 0)
        r["commit_vectors_per_s"] = round(int(r["vectors"]) / commit, 1) if commit else None
    result = {"files": [str(f) for f in files], "video_s": round(total, 1), "cpus": os.cpu_count(),
              "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{len(files)} files, {total:.0f} s of video, {os.cpu_count()} CPUs, load {load[0]:.2f} before")
    print(f"{'run':<22} {'wall s':>7} {'ratio':>6} {'start s':>8}  stages (worker or driver seconds)")
    for r in runs:
        name = "one process" if not r["workers"] else f"Ray, {r['workers']} encoder actor(s)"
        stages = ", ".join(f"{k} {v}" for k, v in r["timings"].items())  # type: ignore[union-attr]
        print(f"{name:<22} {r['wall_s']:>7} {r['ratio']:>5}x {r['cluster_start_s']:>8}  {stages}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
