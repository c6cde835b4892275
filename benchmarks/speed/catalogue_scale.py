"""The catalogue at scale: bytes per hour of video, and the time to rebuild FAISS from it, in SQLite and PostgreSQL.

    python benchmarks/speed/catalogue_scale.py                          # 10^5 vectors, both backends
    python benchmarks/speed/catalogue_scale.py --n 20000 --no-faiss     # quick
    python benchmarks/speed/catalogue_scale.py --db postgresql+psycopg://user:pw@host/empty_db

N random unit vectors of the real encoder's dimension (sora-lite0: 704-d, stored as float16), each with the encoder's
four region vectors (stored as int8; ``--no-regions``: without, as an index from before they were stored) are written
through the store API, as an index run writes them: one transaction per video of ``--video-s`` seconds at 1 vector
per second.
Then, with the store closed and reopened:

* **bytes per hour**: the store's size on disk (the SQLite file; PostgreSQL's tables with their indexes and TOAST)
  over the hours of video its vectors stand for (N / 3600 at 1 frame per second);
* **read**: one pass of ``Store.iter_vectors`` (what every rebuild reads: ids and float16 vectors decoded to float32);
* **near**: ``Store.vectors_near`` for 16 times spread over the first video and the second after each (what the
  copies check of a query reads of each video it compares), milliseconds a call, the mean of 20; ``--video-s 7200``
  for a film's two hours;
* **between**: ``Store.vectors_between`` for 20 s in the middle of that video (what motion agreement and the
  sequence check read of each candidate), milliseconds a call, the mean of 20;
* **rebuild**: ``Library.check(repair=True)`` with no FAISS file: read, fit the projection, train the IVF, add every
  vector, save (the work a machine does when its FAISS copy is missing or stale), then the check reading it back;
* **peak RSS**: the process's resident peak by the end (one backend per run for a peak that is its own).

PostgreSQL runs on a throwaway local server (tests/pg.py, fsync on, unix socket) unless ``--db`` names an empty
database. Both run on the same machine and disk, after the writes (the OS file cache is warm for both). Writes
``benchmarks/results/catalogue_scale-<timestamp>.json`` and prints a table with the figures extrapolated linearly to
``--extrapolate`` vectors (marked as such: measured only at N).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sora_search import Library  # noqa: E402
from sora_search.encoder import encoder_identity  # noqa: E402
from sora_search.encoder.sora import SoraLite0Encoder  # noqa: E402
from sora_search.params import DEFAULT_ENCODER  # noqa: E402
from sora_search.store import IndexMeta, Store  # noqa: E402
from sora_search.store.catalogue import Catalogue  # noqa: E402


def fill(db: str | Path, n: int, video_s: int, seed: int = 0, regions: bool = True) -> float:
    """Write ``n`` random unit vectors (and their region vectors) as videos of ``video_s`` vectors each; returns the
    seconds it took."""
    ident = encoder_identity(DEFAULT_ENCODER)
    count = SoraLite0Encoder.region_count if regions else 0  # the default encoder's
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with Store.open(db) as store:
        store.set_meta(IndexMeta(encoder_name=ident.name, encoder_version=ident.version, raw_dim=ident.dim,
                                 input_size=ident.input_size, sampling_fps=1.0, projection=None, projection_name="",
                                 dim=ident.dim, index_trained_n=0, generation=0))
        for k, first in enumerate(range(0, n, video_s)):
            m = min(video_s, n - first)
            vecs = rng.standard_normal((m, ident.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            parts = rng.standard_normal((m, count, ident.dim)).astype(np.float32) if count else None
            store.add_video(path=f"/archive/{k:07d}.mp4", size=m * 250_000, mtime=1.7e9 + k, fingerprint=f"fp{k}",
                            duration_s=float(m), fps=25.0, width=1280, height=720,
                            timestamps_s=np.arange(m, dtype=np.float64), vectors=vecs, regions=parts)
    return time.perf_counter() - start


def ms_per_call(call: Callable[[], object], rounds: int = 20) -> float:
    """Milliseconds a call of ``call`` takes, the mean of ``rounds`` after one to warm up."""
    call()
    start = time.perf_counter()
    for _ in range(rounds):
        call()
    return (time.perf_counter() - start) / rounds * 1000


def measure(kind: str, location: Path, db: str | None, n: int, video_s: int, faiss: bool,
            regions: bool = True) -> dict[str, Any]:
    catalogue = Catalogue.resolve(location, db)
    location.mkdir(parents=True, exist_ok=True)
    write_s = fill(catalogue, n, video_s, regions=regions)
    with Store.open(catalogue, create=False) as store:
        size = store.size_bytes()
        start = time.perf_counter()
        rows = sum(len(ids) for ids, _ in store.iter_vectors())
        read_s = time.perf_counter() - start
        first = store.videos()[0]
        times = np.linspace(0.0, max(0.0, first.duration_s - 1.0), 16)
        times = np.concatenate([times, times + 1.0])
        near_ms = ms_per_call(lambda: store.vectors_near(first.id, times))
        middle = first.duration_s / 2
        between_ms = ms_per_call(lambda: store.vectors_between(first.id, middle - 10.0, middle + 10.0))
    assert rows == n, (rows, n)
    out: dict[str, Any] = {"backend": kind, "n": n, "regions": regions, "write_s": write_s, "store_bytes": size,
                           "bytes_per_hour": size / (n / 3600.0), "read_s": read_s, "read_vectors_per_s": n / read_s,
                           "near_ms": near_ms, "between_ms": between_ms}
    if faiss:
        with Library.open(location, db=db, create=False) as lib:
            start = time.perf_counter()
            report = lib.check(repair=True)
            out["rebuild_s"] = time.perf_counter() - start
            assert report.ok and report.faiss_vectors == n, report
            out["faiss_bytes"] = (location / "vectors.faiss").stat().st_size
    # The process's peak so far: run one backend per invocation for a peak that is that backend's alone.
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors (seconds of video at 1 frame per second)")
    ap.add_argument("--video-s", type=int, default=600, help="vectors per video (one transaction each)")
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    ap.add_argument("--db", default=None, help="an empty PostgreSQL database to use instead of a throwaway server")
    ap.add_argument("--no-faiss", dest="faiss", action="store_false", help="skip the full FAISS rebuild")
    ap.add_argument("--no-regions", dest="regions", action="store_false",
                    help="store no region vectors (an index from before they were stored)")
    ap.add_argument("--extrapolate", type=int, default=10_000_000, help="vectors to extrapolate the figures to")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="catalogue-scale-") as tmp:
        for kind in args.backends:
            server = None
            db = args.db if kind == "postgres" else None
            if kind == "postgres" and db is None:
                from tests.pg import PgServer, missing

                why = missing()
                if why:
                    sys.exit(f"cannot start a PostgreSQL server: {why} (or pass --db URL)")
                server = PgServer(fsync=True)
                db = server.new_database()
            try:
                results.append(measure(kind, Path(tmp) / kind, db, args.n, args.video_s, args.faiss, args.regions))
            finally:
                if server is not None:
                    server.stop()
            print(f"{kind}: done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    scale = args.extrapolate / args.n
    print(f"\n{args.n} vectors measured; the last three columns are EXTRAPOLATED linearly to {args.extrapolate}")
    print(f"{'backend':<9} {'write s':>8} {'MiB/hour':>9} {'read s':>7} {'near ms':>7} {'betw. ms':>8} "
          f"{'rebuild s':>9} "
          f"{'peak GiB':>8} {'GiB @X':>8} {'read s @X':>10} {'rebuild s @X':>12}")
    for r in results:
        rebuild = r.get("rebuild_s", float("nan"))
        print(f"{r['backend']:<9} {r['write_s']:8.1f} {r['bytes_per_hour'] / 2**20:9.2f} {r['read_s']:7.2f} "
              f"{r['near_ms']:7.2f} {r['between_ms']:8.2f} "
              f"{rebuild:9.1f} {r['peak_rss_bytes'] / 2**30:8.2f} {r['store_bytes'] * scale / 2**30:8.1f} {r['read_s'] * scale:10.0f} "
              f"{rebuild * scale:12.0f}")
    dim = encoder_identity(DEFAULT_ENCODER).dim
    raw = (dim * 2 + (SoraLite0Encoder.region_count * (dim + 4) if args.regions else 0)) * 3600
    print(f"(payload alone: {raw / 2**20:.2f} MiB per hour of video at 1 vector/s: float16 vectors"
          f"{', int8 regions' if args.regions else ''})")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"catalogue_scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"n": args.n, "video_s": args.video_s, "regions": args.regions,
                                "extrapolate_to": args.extrapolate,
                                "payload_bytes_per_hour": raw, "results": results, "machine": platform.platform(),
                                "python": platform.python_version(), "total_s": time.perf_counter() - t0}, indent=2))
    print(f"results in {path}")


if __name__ == "__main__":
    main()
