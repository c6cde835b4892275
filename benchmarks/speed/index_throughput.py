"""Indexing throughput against the decode floor, measured in one run on the same files.

    python benchmarks/speed/index_throughput.py --media /path/to/media-cache/media [--out results.json]

The decode floor is what ``ffmpeg -threads N -i FILE -f null -`` takes over the same files (every frame decoded,
nothing else done); the engine beats it only by decoding less (it skips the frames no other frame depends on) and
keeping every core busy. The run then indexes the same files into a fresh index with the public API and reports
video-seconds per wall-second for both, their ratio, the per-stage breakdown (decode wait, encode, store, index),
the peak RSS of the indexer and the largest resident size of its decode workers together, sampled every 0.2 s (a
child's own peak counts the parent's pages it was forked with), and the CPU seconds of both against ffmpeg's.

``--files`` indexes those files instead of a subset of ``--media``; ``--precision fp32 int8`` indexes them once per
encoder precision, each into a fresh index in a fresh process (so each has its own peak RSS), in the same run.
``--decode-workers N`` decodes N files at once (``index --decode-workers``; 0, the default, lets the library pick).
``--cli`` times ``sora-search index`` as a user runs it instead, from the command's start to its exit (imports,
model load and decode worker start included; the stages are then not broken down).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SUBSETS = {"real": ["video_real"], "animated": ["video_animated"], "all": ["video_real", "video_animated"]}


def cpu_s(who: int) -> float:
    """User plus system CPU seconds of ``resource.RUSAGE_SELF`` (every thread) or ``RUSAGE_CHILDREN`` (waited for)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ffmpeg_floor(files: list[Path], threads: int) -> tuple[float, float]:
    """The decode floor over ``files``: (wall seconds, CPU seconds)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg is needed for the decode floor (apt-get install ffmpeg)")
    start, cpu_start = time.perf_counter(), cpu_s(resource.RUSAGE_CHILDREN)
    for f in files:
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-threads", str(threads), "-i", str(f), "-f", "null", "-"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu_s(resource.RUSAGE_CHILDREN) - cpu_start


class ChildrenRSS(threading.Thread):
    """Samples the summed resident size of this process's child processes (the decode workers) until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        me = str(os.getpid())
        while not self.stop.wait(0.2):
            total = 0
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                except OSError:
                    continue  # the process ended meanwhile
                if fields.get("PPid", "").strip() == me and "VmRSS" in fields:
                    total += int(fields["VmRSS"].split()[0])
            self.peak_kib = max(self.peak_kib, total)


def index_once(roots: list[Path], precision: str | None, device: str | None, decode_workers: int) -> dict:
    """Index ``roots`` into a fresh index in this process: wall time, CPU time (this process and its decode
    workers, which have exited when the library closes), stages, what was indexed, peak RSS."""
    from sora_search import IndexParams, Library
    from sora_search.encoder import resolve_device

    children = ChildrenRSS()
    children.start()
    params = IndexParams(decode_workers=decode_workers)
    with tempfile.TemporaryDirectory() as tmp, Library.open(Path(tmp) / "idx", device=device, precision=precision,
                                                            params=params) as lib:
        start, cpu_start = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
        summary = lib.index(roots)
        index_s, indexer_cpu_s = time.perf_counter() - start, cpu_s(resource.RUSAGE_SELF) - cpu_start
        info = lib.info()
    children.stop.set()
    children.join()
    return {"index_s": index_s, "encoder_version": info.encoder_version, "stages_s": summary.timings,
            "cpu_s": {"indexer": indexer_cpu_s, "decode_workers": cpu_s(resource.RUSAGE_CHILDREN)},
            "indexed": info.videos, "failed": len(summary.failed), "video_s": info.duration_s,
            "vectors": info.vectors, "encoder_device": resolve_device(device), "faiss_device": info.index_device,
            "peak_rss_mib": {"indexer": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                             "decode_workers": children.peak_kib / 1024}}


def cli_once(roots: list[Path], precision: str | None, device: str | None, decode_workers: int) -> dict:
    """``sora-search index`` over ``roots`` into a fresh index, in a child process: its wall time from start to exit,
    the CPU time of it and its decode workers, the peak RSS of the largest of them, and what was indexed."""
    from sora_search import Library
    from sora_search.encoder import resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "idx"
        cmd = [sys.executable, "-m", "sora_search", "index", "--index", str(index), "--decode-workers",
               str(decode_workers), *map(str, roots)]
        cmd += ["--precision", precision] if precision else []
        cmd += ["--device", device] if device else []
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        index_s = time.perf_counter() - start
        failed = re.findall(r"(\d+) failed", done.stderr)  # the summary line, last
        if not failed:
            sys.exit(f"sora-search index failed: {done.stderr.strip()}")
        with Library.open(index) as lib:
            info = lib.info()
    return {"index_s": index_s, "encoder_version": info.encoder_version, "stages_s": {},
            "cpu_s": {"command": cpu_s(resource.RUSAGE_CHILDREN)}, "indexed": info.videos,  # its only child
            "failed": int(failed[-1]), "video_s": info.duration_s, "vectors": info.vectors,
            "encoder_device": resolve_device(device), "faiss_device": info.index_device,
            "peak_rss_mib": {"largest process": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}


def _rss(peak_mib: dict[str, float]) -> str:
    """Peak RSS figures as text: ``{"indexer": 400.0, "decode_workers": 170.0}`` gives "indexer 400 MiB, decode
    workers together 170 MiB"."""
    return ", ".join(f"{k.replace('_', ' ')}{' together' if k == 'decode_workers' else ''} {v:.0f} MiB"
                     for k, v in peak_mib.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, default=None, help="the media/ folder made by benchmarks/fetch_media.sh")
    ap.add_argument("--files", type=Path, nargs="*", default=[], help="index these files instead of --media's")
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "int8"], default=[None],
                    help="encoder precision(s) to index with, one fresh index each (default: the library's)")
    ap.add_argument("--subset", choices=sorted(SUBSETS), default="all")
    ap.add_argument("--decode-workers", type=int, default=0, help="files decoded at once (0: the library's default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ffmpeg threads for the floor")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None,
                    help="where the encoder (and a GPU build of faiss) runs; default CUDA when available")
    ap.add_argument("--cli", action="store_true", help="time the sora-search index command, start-up included")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/index_throughput.json"))
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one precision, JSON on stdout
    args = ap.parse_args()

    from sora_search.scan import walk

    if not args.files and args.media is None:
        ap.error("give --media or --files")
    roots = list(args.files) or [args.media / d for d in SUBSETS[args.subset]]
    if args.one:
        once = cli_once if args.cli else index_once
        print(json.dumps(once(roots, args.precision[0], args.device, args.decode_workers)))
        return
    files = [Path(f.path) for f in walk(roots).files]
    floor_s, floor_cpu_s = ffmpeg_floor(files, args.threads)

    runs = {}
    for precision in args.precision:
        cmd = [sys.executable, __file__, "--one", "--decode-workers", str(args.decode_workers),
               "--files", *map(str, roots)]
        cmd += ["--precision", precision] if precision else []
        cmd += ["--device", args.device] if args.device else []
        cmd += ["--cli"] if args.cli else []
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        run = json.loads(done.stdout.strip().splitlines()[-1])
        run["index_over_floor"] = run["index_s"] / floor_s
        cpu_total_s = sum(run["cpu_s"].values())
        run["cpu_over_floor"] = cpu_total_s / floor_cpu_s
        runs[precision or "default"] = run
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(run["stages_s"].items())) or "not broken down"
        print(f"{precision or 'default'} (encoder v{run['encoder_version']}): {run['index_s']:.1f} s, "
              f"{run['index_over_floor']:.2f}x the decode floor; stages: {stages}"
              + f"; CPU {cpu_total_s:.1f} s ({run['cpu_over_floor']:.2f}x the floor's, "
              f"{cpu_total_s / run['index_s']:.1f} cores busy); peak RSS {_rss(run['peak_rss_mib'])}")
    last = run
    index_s, video_s = last["index_s"], last["video_s"]
    peak = {k: max(r["peak_rss_mib"][k] for r in runs.values()) for k in last["peak_rss_mib"]}
    result = {
        "files": len(files), "indexed": last["indexed"], "failed": last["failed"], "video_s": video_s,
        "vectors": last["vectors"], "cpu_count": os.cpu_count(), "decode_workers": args.decode_workers,
        "encoder_device": last["encoder_device"], "faiss_device": last["faiss_device"],
        "decode_floor_s": floor_s, "decode_floor_cpu_s": floor_cpu_s, "index_s": index_s,
        "floor_video_s_per_s": video_s / floor_s, "index_video_s_per_s": video_s / index_s,
        "index_over_floor": index_s / floor_s,
        "stages_s": last["stages_s"],
        "peak_rss_mib": peak, "by_precision": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{len(files)} files, {video_s:.0f} s of video, {last['vectors']} vectors ({last['failed']} failed); "
          f"encoder on {last['encoder_device']}, FAISS on {last['faiss_device']}")
    print(f"decode floor (ffmpeg -threads {args.threads} -f null): {floor_s:7.1f} s  "
          f"{video_s / floor_s:6.1f} video-s/s, CPU {floor_cpu_s:.1f} s ({floor_cpu_s / floor_s:.1f} cores busy)")
    print(f"sora-search index:                       {index_s:7.1f} s  {video_s / index_s:6.1f} video-s/s")
    print(f"index / floor: {index_s / floor_s:.2f}x")
    print(f"peak RSS over the runs: {_rss(peak)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
