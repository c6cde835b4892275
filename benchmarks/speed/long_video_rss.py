"""Peak memory of indexing one long 1080p video, against a fixed RSS ceiling.

    python benchmarks/speed/long_video_rss.py [--hours 2.0] [--ceiling-mib 2048] [--cache DIR]
    python benchmarks/speed/long_video_rss.py --hours 0.05      # 3-minute smoke test

The video is made cheaply: one segment of ffmpeg's ``testsrc`` (a scrolling gradient and a counter), its hue turned
once round the colour wheel over the segment so every second looks different, is encoded once with libx264
``-preset veryfast`` (B-frames kept, as in real footage; ``testsrc2`` has a noise patch that makes two hours
~2 GiB), then copied end to end with the concat demuxer and ``-c copy`` into a file of ``--hours``; both are cached
under ``--cache`` and reused while their sidecar says they were made with the same settings and ffprobe reads the
expected duration.

``sora-search index`` then runs in a subprocess while a sampler thread reads ``/proc`` every ``--interval`` s: the
RSS of the whole process tree (the indexer and its decode worker, summed at the same instant) and each process's
own high-water mark (``VmHWM``, exact, not sampled). ``wait4`` on the indexer gives its rusage ``ru_maxrss`` (the
largest single process of its tree, as ``RUSAGE_CHILDREN`` would without the ffmpeg runs that made the video) as a
cross-check. The verdict is the sampled tree peak against ``--ceiling-mib``; the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORKER_MODULE = "sora_search.decode._child"
SOURCE = "testsrc+hue"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is needed to make the video (apt-get install ffmpeg)")
    return path


def probe_duration(path: Path) -> float | None:
    out = subprocess.run([need("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of",
                          "default=nw=1:nk=1", str(path)], capture_output=True, text=True, check=False)
    try:
        return float(out.stdout.strip())
    except ValueError:
        return None


def cached(path: Path, settings: dict[str, object], duration_s: float) -> bool:
    """True when ``path`` was made with ``settings`` and ffprobe reads about ``duration_s`` from it."""
    sidecar = path.with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        return False
    try:
        if json.loads(sidecar.read_text()) != settings:
            return False
    except ValueError:
        return False
    got = probe_duration(path)
    return got is not None and abs(got - duration_s) <= max(1.0, 0.01 * duration_s)


def ffmpeg(args: list[str]) -> None:
    subprocess.run([need("ffmpeg"), "-nostdin", "-y", "-v", "error", *args], check=True)


def make_video(cache: Path, hours: float, size: str, fps: int, crf: int, segment_s: float) -> tuple[Path, float]:
    """The long video (made, or reused from ``cache``) and the seconds spent making it."""
    total_s = hours * 3600
    segment_s = min(segment_s, total_s)
    seg_settings = {"source": SOURCE, "size": size, "fps": fps, "crf": crf, "preset": "veryfast",
                    "seconds": segment_s}
    seg = cache / f"segment_{size}_{fps}fps_crf{crf}_{segment_s:g}s.mp4"
    long_settings = {**seg_settings, "segment": seg.name, "total_s": total_s}
    out = cache / f"long_{size}_{fps}fps_crf{crf}_{total_s:g}s.mp4"
    if cached(out, long_settings, total_s):
        return out, 0.0

    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not cached(seg, seg_settings, segment_s):
        ffmpeg(["-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}", "-t", f"{segment_s:g}",
                "-vf", f"hue=H=2*PI*t/{segment_s:g}", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-g", str(10 * fps), str(seg)])
        seg.with_suffix(".json").write_text(json.dumps(seg_settings))
    repeats = math.ceil(total_s / segment_s - 1e-9)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=cache, delete=False) as listing:
        listing.write(f"file '{seg.resolve()}'\n" * repeats)
    partial = out.with_suffix(".part.mp4")
    try:
        ffmpeg(["-f", "concat", "-safe", "0", "-i", listing.name, "-t", f"{total_s:g}", "-c", "copy",
                "-movflags", "+faststart", str(partial)])
    finally:
        os.unlink(listing.name)
    partial.replace(out)
    out.with_suffix(".json").write_text(json.dumps(long_settings))
    return out, time.perf_counter() - start


def read_proc(pid: int) -> tuple[int, str, int, int] | None:
    """(parent pid, role, RSS KiB, VmHWM KiB) of ``pid``, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields.get("VmRSS", "0 kB").split()[0])
    hwm = int(fields.get("VmHWM", "0 kB").split()[0])
    return ppid, ("worker" if WORKER_MODULE in cmdline else "other"), rss, hwm


class TreeSampler(threading.Thread):
    """Samples the RSS of a process and all its descendants until stopped."""

    def __init__(self, root: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.root, self.interval_s = root, interval_s
        self.stop = threading.Event()
        self.samples = 0
        self.peak_total_kib = 0
        self.peak_total_at_s = 0.0
        self.peak_kib: dict[str, int] = {}  # role -> highest sampled RSS of one process in it
        self.hwm_kib: dict[int, tuple[str, int]] = {}  # pid -> (role, VmHWM last read)
        self.trace: list[tuple[float, int]] = []  # (s since start, tree RSS KiB), one point a second

    def run(self) -> None:
        start = time.perf_counter()
        next_trace = 0.0
        while not self.stop.is_set():
            procs = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit() and (info := read_proc(int(entry))) is not None:
                    procs[int(entry)] = info
            tree, frontier = set(), [self.root]
            while frontier:
                pid = frontier.pop()
                if pid in procs and pid not in tree:
                    tree.add(pid)
                    frontier.extend(p for p, info in procs.items() if info[0] == pid)
            if not tree:
                break
            total = 0
            for pid in tree:
                _, role, rss, hwm = procs[pid]
                role = "indexer" if pid == self.root else role
                total += rss
                self.peak_kib[role] = max(self.peak_kib.get(role, 0), rss)
                self.hwm_kib[pid] = (role, max(hwm, self.hwm_kib.get(pid, (role, 0))[1]))
            now = time.perf_counter() - start
            if total > self.peak_total_kib:
                self.peak_total_kib, self.peak_total_at_s = total, now
            if now >= next_trace:
                self.trace.append((round(now, 1), total))
                next_trace = now + 1.0
            self.samples += 1
            self.stop.wait(self.interval_s)


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.0, help="length of the video (0.05 = a 3-minute smoke test)")
    ap.add_argument("--size", default="1920x1080", help="frame size, WxH")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--crf", type=int, default=23, help="libx264 quality of the segment (higher = smaller file)")
    ap.add_argument("--segment-s", type=float, default=60.0, help="seconds encoded once, then repeated")
    ap.add_argument("--ceiling-mib", type=float, default=2048.0, help="peak RSS of the process tree to pass")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between /proc samples")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="passed to sora-search index")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/results/long_video_cache"),
                    help="where the generated video is kept and reused")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/long_video_rss.json"))
    args = ap.parse_args()
    if args.hours <= 0:
        ap.error("--hours must be positive")

    video, make_s = make_video(args.cache, args.hours, args.size, args.fps, args.crf, args.segment_s)
    video_s = probe_duration(video) or args.hours * 3600
    print(f"video: {video} ({video_s:.0f} s, {video.stat().st_size / 2**20:.0f} MiB, "
          + (f"made in {make_s:.1f} s)" if make_s else "cached)"), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        idx, log_path = Path(tmp) / "idx", args.out.with_suffix(".log")
        cmd = [sys.executable, "-m", "sora_search", "-v", "index", str(video), "--index", str(idx)]
        if args.device:
            cmd += ["--device", args.device]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            sampler = TreeSampler(proc.pid, args.interval)
            sampler.start()
            # wait4 rather than proc.wait(): the rusage of this child's tree alone, not of the ffmpeg runs above.
            _, status, usage = os.wait4(proc.pid, 0)
            wall_s = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            sampler.stop.set()
            sampler.join()
        info_run = subprocess.run([sys.executable, "-m", "sora_search", "info", "--index", str(idx), "--json"],
                                  capture_output=True, text=True, check=False)
    info = json.loads(info_run.stdout) if info_run.returncode == 0 else {}
    log_text = log_path.read_text(errors="replace")
    stages = next((line.split("time:", 1)[1].strip() for line in log_text.splitlines()
                   if line.strip().startswith("time:")), "")

    hwm = {role: max((kib for r, kib in sampler.hwm_kib.values() if r == role), default=0)
           for role in ("indexer", "worker", "other")}
    peak_total = sampler.peak_total_kib
    # Median tree RSS per quarter of the run: growth from quarter to quarter is what a longer video would extend.
    n = len(sampler.trace)
    quarters = [sorted(kib for _, kib in sampler.trace[i * n // 4:(i + 1) * n // 4]) for i in range(4)]
    quarter_medians = [mib(q[len(q) // 2]) if q else None for q in quarters]
    passed = proc.returncode == 0 and peak_total / 1024 <= args.ceiling_mib
    result = {
        "video": str(video), "video_s": video_s, "video_bytes": video.stat().st_size, "size": args.size,
        "fps": args.fps, "crf": args.crf, "make_video_s": make_s, "cpu_count": os.cpu_count(),
        "command": cmd, "exit_code": proc.returncode, "wall_s": wall_s, "video_s_per_s": video_s / wall_s,
        "vectors": info.get("vectors"), "indexed_duration_s": info.get("duration_s"),
        "sampling_fps": info.get("sampling_fps"), "stages": stages,
        "peak_rss_mib": {
            "tree_total": mib(peak_total), "tree_total_at_s": round(sampler.peak_total_at_s, 1),
            "indexer": mib(sampler.peak_kib.get("indexer", 0)), "worker": mib(sampler.peak_kib.get("worker", 0)),
            "other": mib(sampler.peak_kib.get("other", 0)),
            "hwm_indexer": mib(hwm["indexer"]), "hwm_worker": mib(hwm["worker"]), "hwm_other": mib(hwm["other"]),
            "hwm_sum": mib(sum(kib for _, kib in sampler.hwm_kib.values())),
            "tree_median_by_quarter": quarter_medians, "wait4_ru_maxrss": mib(usage.ru_maxrss),
            "rusage_children_ru_maxrss": mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        },
        "samples": sampler.samples, "interval_s": args.interval, "processes_seen": len(sampler.hwm_kib),
        "ceiling_mib": args.ceiling_mib, "pass": passed,
        "rss_trace_mib": [(t, mib(kib)) for t, kib in sampler.trace],
    }
    args.out.write_text(json.dumps(result, indent=2))

    p = result["peak_rss_mib"]
    print(f"sora-search index: exit {proc.returncode}, {wall_s:.1f} s wall, {video_s / wall_s:.1f} video-s/s, "
          f"{info.get('vectors')} vectors")
    if stages:
        print(f"stages: {stages}")
    print(f"peak RSS (sampled every {args.interval:g} s, {sampler.samples} samples): tree {p['tree_total']:.0f} MiB "
          f"at {p['tree_total_at_s']:.0f} s; indexer {p['indexer']:.0f} MiB, worker {p['worker']:.0f} MiB")
    print("tree RSS median by quarter of the run: " + " / ".join(f"{m:.0f}" for m in quarter_medians if m is not None)
          + " MiB")
    print(f"high-water marks: indexer {p['hwm_indexer']:.0f} MiB, worker {p['hwm_worker']:.0f} MiB "
          f"(sum {p['hwm_sum']:.0f}); wait4 ru_maxrss {p['wait4_ru_maxrss']:.0f} MiB, "
          f"RUSAGE_CHILDREN {p['rusage_children_ru_maxrss']:.0f} MiB (includes ffmpeg when it made the video)")
    verdict = "PASS" if passed else "FAIL"
    why = "" if proc.returncode == 0 else f" (indexer exit {proc.returncode}, see {log_path})"
    print(f"{verdict}: tree peak {p['tree_total']:.0f} MiB vs ceiling {args.ceiling_mib:.0f} MiB{why}")
    if passed and p["hwm_sum"] > args.ceiling_mib:
        print(f"  but the sum of the per-process high-water marks, {p['hwm_sum']:.0f} MiB, is over the ceiling: "
              "a peak between samples may have been missed")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
