"""Query latency for 10 s probes: warm (a loaded Library) and cold (the CLI), against decoding and encoding the
probe alone, measured in one run; and for 30 s probes that match nothing, which every view is looked at.

    python benchmarks/speed/query_latency.py --index IDX --media /path/to/media-cache/media [--probes 8]

IDX is an index of the media (for example the one `index_throughput.py` or `sora-search index` built). Probes are
10 s excerpts of indexed videos re-encoded at half size (made with ffmpeg, deleted afterwards). For each probe:
"floor" decodes and encodes it with the library's own worker and encoder (the work a query cannot avoid), "warm"
is ``Library.query`` on an already-open library, "cold" is a whole ``sora-search query`` process. "right video
first" counts the probe's source video only: in the library of ``benchmarks/fetch_media.sh`` the Big Buck Bunny
trailer's shots are also in the film, so a trailer probe may rightly list the film first.

The no-match probes are 30 s renders of ffmpeg's generators (cellular automata, a Mandelbrot zoom, a Game of Life)
at 640x360, 25 fps: footage no library holds. A query that finds nothing at the threshold looks at every view of
``auto`` (mirror, turns, halves, a found inset), so this is its worst case; "matched" counts those that still
reported a video. Each no-match probe's times are the medians of ``--repeat`` rounds (floor, fast, auto).

Last, a 30 s probe of one photo held still (the first photo under ``MEDIA/photos``, not in an index of the videos; an
upload with a cover image over its sound): ``auto`` as shipped, where a frame that repeats the last one encoded takes
its vectors, against the same query with every frame encoded (``REPEAT_TOLERANCE`` below zero), and the floor with
every frame encoded; each the median of ``--repeat`` rounds, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# ffmpeg lavfi sources for the no-match probes (seeded: cellauto and life start from a random row or grid otherwise).
NO_MATCH = (
    "cellauto=s=640x360:rule=110:rate=25:seed=1",
    "mandelbrot=s=640x360:rate=25",
    "life=s=640x360:mold=10:rate=25:ratio=0.1:death_color=#C83232:life_color=#00ff00:seed=2",
    "cellauto=s=640x360:rule=30:rate=25:scroll=0:seed=3",
)


def _floor(lib, path: Path) -> None:
    """Decode and encode ``path`` once, whole, as a query's first pass does; nothing kept for the next query (versions
    before 2026-12-04 kept nothing: the script also measures them, as a baseline beside a change)."""
    from sora_search.embed.views import FULL
    from sora_search.params import QueryParams

    lib._embedder.probe(path, [FULL], timeout_s=60, blank_std=QueryParams().blank_std)
    getattr(lib._embedder, "forget_probe", lambda: None)()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--media", type=Path, required=True, help="the media/ folder made by benchmarks/fetch_media.sh")
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--no-match", type=int, default=4, help="30 s probes of footage no library holds")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per no-match probe (each time is its median)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/query_latency.json"))
    args = ap.parse_args()

    from sora_search import Library

    ffmpeg = shutil.which("ffmpeg") or sys.exit("ffmpeg is needed to cut probes")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, Library.open(args.index, create=False) as lib:
        videos = [v for v in lib._store.videos(status="indexed") if v.duration_s >= 12]
        probes = []
        for i, v in enumerate(rng.choice(len(videos), size=min(args.probes, len(videos)), replace=False)):
            video = videos[int(v)]
            start = float(rng.uniform(0, video.duration_s - 10.5))
            out = Path(tmp) / f"probe_{i}.mp4"
            subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-ss", f"{start:.2f}", "-i", video.path,
                            "-t", "10", "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-an", str(out)], check=True)
            probes.append((out, video.path))
        lib.query(probes[0][0])  # load the encoder, the FAISS file and the decode worker once
        floor, warm, cold, correct = [], [], [], 0
        for probe, truth in probes:
            t = time.perf_counter()
            _floor(lib, probe)
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = lib.query(probe)
            warm.append(time.perf_counter() - t)
            correct += bool(result.matches) and result.matches[0].path == truth
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sora_search", "query", str(probe), "--index", str(args.index)],
                           check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
            cold.append(time.perf_counter() - t)
        nm_floor, nm_fast, nm_auto, nm_matched = [], [], [], 0
        for i, source in enumerate(NO_MATCH[:args.no_match]):
            out = Path(tmp) / f"nomatch_{i}.mp4"
            subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", "30",
                            "-vf", "scale=640:360,format=yuv420p", "-r", "25", "-an", str(out)], check=True)
            times: dict[str, list[float]] = {"floor": [], "fast": [], "auto": []}
            for _ in range(args.repeat):  # each probe's median of a few rounds: one slow round must not decide
                t = time.perf_counter()
                _floor(lib, out)
                times["floor"].append(time.perf_counter() - t)
                t = time.perf_counter()
                lib.query(out, views="fast")
                times["fast"].append(time.perf_counter() - t)
                t = time.perf_counter()
                matched = bool(lib.query(out).matches)
                times["auto"].append(time.perf_counter() - t)
            nm_matched += matched
            nm_floor.append(float(np.median(times["floor"])))
            nm_fast.append(float(np.median(times["fast"])))
            nm_auto.append(float(np.median(times["auto"])))

        still = _still_times(lib, Path(tmp), args.media, ffmpeg, args.repeat)

    def p(xs: list[float], q: float) -> float:
        return float(np.percentile(xs, q))

    result = {
        "probes": len(probes), "top1_correct": correct,
        "floor_s": {"p50": p(floor, 50), "p95": p(floor, 95)},
        "warm_s": {"p50": p(warm, 50), "p95": p(warm, 95)},
        "cold_s": {"p50": p(cold, 50), "p95": p(cold, 95)},
        "warm_over_floor_p50": p(warm, 50) / p(floor, 50),
        "warm_over_floor_per_probe_p50": float(np.median([w / f for w, f in zip(warm, floor)])),
        "cold_over_floor_p50": p(cold, 50) / p(floor, 50),
    }
    if nm_auto:
        result["no_match"] = {
            "probes": len(nm_auto), "matched": nm_matched,
            "floor_s": {"p50": p(nm_floor, 50), "p95": p(nm_floor, 95)},
            "fast_s": {"p50": p(nm_fast, 50), "p95": p(nm_fast, 95)},
            "auto_s": {"p50": p(nm_auto, 50), "p95": p(nm_auto, 95)},
            "auto_over_floor_p50": p(nm_auto, 50) / p(nm_floor, 50),
            "auto_over_floor_per_probe_p50": float(np.median([a / f for a, f in zip(nm_auto, nm_floor)])),
            "auto_over_floor_max": max(a / f for a, f in zip(nm_auto, nm_floor)),
        }
    if still:
        result["still"] = still
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{len(probes)} probes of 10 s, {correct} with the right video first")
    for name in ("floor", "warm", "cold"):
        r = result[f"{name}_s"]
        print(f"{name:5s} p50 {r['p50']:.2f} s  p95 {r['p95']:.2f} s")
    print(f"warm / floor (p50): {result['warm_over_floor_p50']:.2f}x (per probe: median "
          f"{result['warm_over_floor_per_probe_p50']:.2f}x)   cold / floor: {result['cold_over_floor_p50']:.2f}x")
    if nm_auto:
        nm = result["no_match"]
        print(f"{nm['probes']} no-match probes of 30 s, {nm['matched']} reported a match")
        for name in ("floor", "fast", "auto"):
            r = nm[f"{name}_s"]
            print(f"{name:5s} p50 {r['p50']:.2f} s  p95 {r['p95']:.2f} s")
        print(f"auto / floor (p50): {nm['auto_over_floor_p50']:.2f}x   per probe: median "
              f"{nm['auto_over_floor_per_probe_p50']:.2f}x, worst {nm['auto_over_floor_max']:.2f}x")
    if still:
        auto, every, floor_every = still["auto_s"], still["auto_every_frame_s"], still["floor_every_frame_s"]
        print(f"still 30 s probe: auto {auto:.2f} s, every frame encoded {every:.2f} s ({every / auto:.2f}x); "
              f"floor with every frame encoded {floor_every:.2f} s, auto against it {auto / floor_every:.2f}x")
    print(f"wrote {args.out}")


def _still_times(lib, tmp: Path, media: Path, ffmpeg: str, repeat: int) -> dict[str, float] | None:
    """Medians of ``repeat`` alternating rounds for a 30 s probe of one photo held still (None without photos)."""
    import sora_search.embed as embed

    photos = sorted(p for p in (media / "photos").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        return None
    out = tmp / "still.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-loop", "1", "-i", str(photos[0]), "-t", "30", "-vf",
                    "scale=640:360,format=yuv420p", "-r", "25", "-an", str(out)], check=True)
    shipped = getattr(embed, "REPEAT_TOLERANCE", None)
    times: dict[str, list[float]] = {"floor_every_frame_s": [], "auto_every_frame_s": [], "auto_s": []}
    try:
        for _ in range(repeat):
            for name, tolerance in (("floor_every_frame_s", -1.0), ("auto_every_frame_s", -1.0), ("auto_s", shipped)):
                setattr(embed, "REPEAT_TOLERANCE", tolerance)  # no effect on versions without it
                t = time.perf_counter()
                if name.startswith("floor"):
                    _floor(lib, out)
                else:
                    lib.query(out)
                times[name].append(time.perf_counter() - t)
    finally:
        setattr(embed, "REPEAT_TOLERANCE", shipped)
    return {name: float(np.median(ts)) for name, ts in times.items()}


if __name__ == "__main__":
    main()
