"""Query latency over HTTP (``sora-search serve``) against ``Library.query`` on the same probes in the same run,
and the server's start-up time.

    python benchmarks/speed/serve_latency.py --index IDX PROBE [PROBE...] [--rounds 3] [--json out.json]

"start-up" is from starting the ``sora-search serve`` process to its first ``/healthz`` answer (imports, opening the
library). Each probe is first queried once both ways (warm-up: the encoder loads on the first query), then
``--rounds`` times each, alternating: "library" is ``Library.query`` on an open library in this process, "http" is
a ``POST /api/query`` upload to the server (upload, sniff, the same query, JSON). The server runs on 127.0.0.1 and
a free port and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    import httpx

    from sora_search import Library

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("probes", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sora_search", "-q", "serve", "--index", str(args.index),
                             "--port", str(port)])
    try:
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
            if proc.poll() is not None:
                raise SystemExit(f"serve exited with {proc.returncode}")
        startup_s = time.perf_counter() - started

        def http(probe: Path) -> float:
            t0 = time.perf_counter()
            with open(probe, "rb") as f:
                r = httpx.post(url + "/api/query", files={"file": (probe.name, f, "video/mp4")}, timeout=600)
            r.raise_for_status()
            return time.perf_counter() - t0

        with Library.open(args.index, create=False) as lib:
            def local(probe: Path) -> float:
                t0 = time.perf_counter()
                lib.query(probe)
                return time.perf_counter() - t0

            for probe in args.probes:
                local(probe), http(probe)
            times: dict[str, list[float]] = {"library": [], "http": []}
            for _ in range(args.rounds):
                for probe in args.probes:
                    times["library"].append(local(probe))
                    times["http"].append(http(probe))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lib_p50, http_p50 = statistics.median(times["library"]), statistics.median(times["http"])
    out = {"startup_s": round(startup_s, 2), "library_p50_s": round(lib_p50, 3), "http_p50_s": round(http_p50, 3),
           "http_over_library": round(http_p50 / lib_p50, 2), "queries": len(times["http"]),
           "library_max_s": round(max(times["library"]), 3), "http_max_s": round(max(times["http"]), 3)}
    print(f"start-up {out['startup_s']} s; warm query p50: library {lib_p50:.3f} s, http {http_p50:.3f} s "
          f"({out['http_over_library']}x), {out['queries']} queries each")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
