"""What thumbnails cost: made at index time (every sampled second) against on demand (one seek per picture shown).

    python benchmarks/speed/thumbs_cost.py VIDEO [VIDEO...] [--shown 20] [--json out.json]

"index time" is the extra work an index run would do per sampled second if it stored a thumbnail: scaling the frame
it has already decoded to 160 px and JPEG-encoding it (decoding is not counted: the run decodes that frame anyway),
and the bytes stored. "on demand" is :func:`sora_search.thumbs.grab` for a random second: open, seek, decode to the
frame, scale, encode, the cost of a cache miss. Per hour of video at 1 sampled frame per second.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path


def main() -> None:
    import av

    from sora_search.thumbs import _jpeg, duration_s, grab

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--shown", type=int, default=20, help="on-demand thumbnails timed per video")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(0)
    rows = []
    for path in args.videos:
        encode_s, sizes, last = [], [], -1
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            size = f"{stream.codec_context.width}x{stream.codec_context.height}"
            for frame in container.decode(stream):
                if frame.time is None or int(frame.time) == last:
                    continue
                last = int(frame.time)
                t0 = time.perf_counter()
                sizes.append(len(_jpeg(frame, 160)))
                encode_s.append(time.perf_counter() - t0)
        length = duration_s(path)
        grab_s = []
        for _ in range(args.shown):
            t0 = time.perf_counter()
            grab(path, rng.uniform(0, max(length - 0.5, 0)))
            grab_s.append(time.perf_counter() - t0)
        rows.append({"video": path.name, "size": size, "duration_s": round(length, 1), "seconds": len(sizes),
                     "index_ms_per_s": round(1000 * statistics.mean(encode_s), 2),
                     "bytes_per_thumb": round(statistics.mean(sizes)),
                     "on_demand_ms_p50": round(1000 * statistics.median(grab_s), 1),
                     "on_demand_ms_max": round(1000 * max(grab_s), 1)})
    hour_s = sum(r["index_ms_per_s"] * r["seconds"] for r in rows) / sum(r["seconds"] for r in rows) * 3.6
    hour_mb = sum(r["bytes_per_thumb"] * r["seconds"] for r in rows) / sum(r["seconds"] for r in rows) * 3600 / 2**20
    summary = {"videos": rows, "index_time_s_per_hour": round(hour_s, 1), "index_time_mib_per_hour": round(hour_mb, 1),
               "on_demand_ms_p50": statistics.median(r["on_demand_ms_p50"] for r in rows)}
    for r in rows:
        print(f"{r['video']:<28} {r['size']:>9} {r['duration_s']:>7.1f} s  index {r['index_ms_per_s']:.2f} ms/s, "
              f"{r['bytes_per_thumb']} B/thumb  on demand p50 {r['on_demand_ms_p50']} ms (max {r['on_demand_ms_max']})")
    print(f"at index time: {summary['index_time_s_per_hour']} s and {summary['index_time_mib_per_hour']} MiB per hour "
          f"of video; on demand: {summary['on_demand_ms_p50']} ms per thumbnail shown (cache miss)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
