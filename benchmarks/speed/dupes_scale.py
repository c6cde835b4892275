"""``dupes`` at scale: wall time, peak memory and recall of planted copies over libraries of 250k to 1M vectors.

    python benchmarks/speed/dupes_scale.py --index benchmarks/results/idx              # seeds from any index
    python benchmarks/speed/dupes_scale.py --index IDX --sizes 250000                  # quick
    python benchmarks/speed/dupes_scale.py --index IDX --work /tmp/dupes-scale --keep  # keep the libraries

A library is written straight into a store (no video is decoded: the vectors are made, as ``faiss_scale.py``
makes them, from the real descriptors of ``--index``) and grown size by size; at each size its FAISS index is
rebuilt from the stored vectors, as an index run does, and ``sora-search dupes --json`` runs on it in a child
process: its wall time and peak RSS (the child's own high-water mark, ``VmHWM``) are what is measured.

**Library.** The generator of ``faiss_scale.py`` (real descriptors projected to 256-d, walked through in 60 s clips
at 0.5-2x, mixed with a partner, shifted by a clip-wide offset and per-frame noise), mapped back to the 704-d raw
space through the seeds' PCA and stored as float16, as the encoder's vectors are. Each clip is one video.

The clips walk over a few thousand real seconds, so at 1M vectors each of those seconds is walked by hundreds of
clips; with faiss_scale's clip-wide offsets (0.25-0.6) these are near-copies of one another, a far denser crowd
than real footage has, and the background of every second rises with the library. ``--clip-sigma 0.6 1.0`` makes
each clip its own footage.

**Planted copies.** ``--planted`` of the clips (1% by default) get a copy, stored as one more video: half of them
whole (the same clip made again with fresh frame noise and ``--reencode-sigma`` of "re-encoding" noise: a
re-encoded copy), half a 20-40 s excerpt of it (a video that contains the other). *Recall* is the share of
(clip, copy) pairs that ``dupes`` reports at its default threshold; *other pairs* are those between clips made
independently (clips may walk over the same real seconds, so some of these are look-alikes by construction).

Writes ``benchmarks/results/dupes_scale-<timestamp>.json`` and prints a table; the growth rate is the exponent of
time against vectors between the smallest and the largest size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from faiss_scale import Generator  # noqa: E402

from sora_search.encoder import Projection  # noqa: E402
from sora_search.index import IndexKeeper  # noqa: E402
from sora_search.params import DEFAULT_ENCODER, IndexParams  # noqa: E402
from sora_search.store import Store  # noqa: E402
from sora_search.store.catalogue import DB_NAME  # noqa: E402

CLIP_S = 60


def load_raw_seeds(index: Path) -> np.ndarray:
    """(m, raw_dim) float32: every stored raw descriptor of a sora-search index, in store order."""
    with Store.open(index / DB_NAME, create=False) as store:
        return np.concatenate([raw for _, raw in store.iter_vectors()]).astype(np.float32)


class RawGenerator:
    """faiss_scale's generator in the seeds' PCA-256 space, mapped back to raw (704-d, L2-normalised) vectors."""

    def __init__(self, raw: np.ndarray, seed: int) -> None:
        self.pca = Projection.fit(raw, 256, min_vectors=2)
        assert self.pca.mean is not None and self.pca.matrix is not None
        centred = self.pca.transform(raw)
        self.scale = float(np.median(np.linalg.norm(centred, axis=1)))
        self.gen = Generator(self.pca.apply(raw), CLIP_S, seed)

    def to_raw(self, v: np.ndarray) -> np.ndarray:
        assert self.pca.mean is not None and self.pca.matrix is not None
        raw = self.pca.mean + self.scale * v @ self.pca.matrix.T
        return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)

    def clip(self, rng: np.random.Generator, clips: dict[str, np.ndarray], c: int, t: np.ndarray,
             extra_sigma: float = 0.0) -> np.ndarray:
        v, _ = self.gen.frames(rng, clips, np.full(len(t), c), t, extra_sigma=extra_sigma)
        return self.to_raw(v)


class Library:
    """The generated library, grown size by size: clips (and their planted copies) are added to one store."""

    def __init__(self, location: Path, gen: RawGenerator, planted_share: float, reencode_sigma: float,
                 clip_sigma: tuple[float, float] | None, seed: int) -> None:
        from sora_search import identity

        if location.exists():
            shutil.rmtree(location)
        location.mkdir(parents=True)
        self.location, self.gen, self.planted_share, self.sigma = location, gen, planted_share, reencode_sigma
        self.clip_sigma = clip_sigma
        self.rng = np.random.default_rng(seed)
        self.store = Store.open(location / DB_NAME)
        identity.ensure(self.store, location, DEFAULT_ENCODER, 1.0)
        self.vectors = self.clips = 0
        self.truth: list[tuple[str, str, str]] = []

    def _add(self, name: str, vectors: np.ndarray) -> None:
        ts = np.arange(len(vectors), dtype=np.float64)
        self.store.add_video(path=f"/synthetic/{name}.mp4", size=100_000 + len(vectors), mtime=1e9,
                             fingerprint=name, duration_s=float(len(vectors)), fps=25.0, width=640, height=360,
                             timestamps_s=ts, vectors=vectors)
        self.vectors += len(vectors)

    def grow(self, n: int) -> dict[str, float]:
        """Add clips and planted copies until the library holds about ``n`` vectors, then rebuild its index from
        the stored vectors (as an index run does when the corpus has grown)."""
        t0 = time.perf_counter()
        todo = n - self.vectors
        n_planted = max(1, int(round(self.planted_share * todo / CLIP_S)))
        n_clips = max(1, (todo - n_planted * (CLIP_S * 3 // 4)) // CLIP_S)
        clips = self.gen.gen.clips(self.rng, n_clips)
        if self.clip_sigma is not None:
            clips["sigma"] = self.rng.uniform(*self.clip_sigma, n_clips).astype(np.float32)
        planted = set(self.rng.choice(n_clips, size=min(n_planted, n_clips), replace=False).tolist())
        t = np.arange(CLIP_S, dtype=np.float64)
        for c in range(n_clips):
            name = f"{self.clips + c:06d}"
            self._add(f"clip{name}", self.gen.clip(self.rng, clips, c, t))
            if c not in planted:
                continue
            if len(self.truth) % 2 == 0:
                self._add(f"copy{name}", self.gen.clip(self.rng, clips, c, t, extra_sigma=self.sigma))
                self.truth.append((f"clip{name}", f"copy{name}", "whole"))
            else:
                length = int(self.rng.integers(20, 41))
                start = int(self.rng.integers(0, CLIP_S - length + 1))
                part = self.gen.clip(self.rng, clips, c, t[start:start + length], extra_sigma=self.sigma)
                self._add(f"part{name}", part)
                self.truth.append((f"clip{name}", f"part{name}", "excerpt"))
        self.clips += n_clips
        written = time.perf_counter() - t0
        IndexKeeper(self.location, self.store, IndexParams(), "cpu").rebuild()
        return {"write_s": written, "index_s": time.perf_counter() - t0 - written}

    def close(self) -> None:
        self.store.close()


def copy_cosine(gen: RawGenerator, sigma: float, clip_sigma: tuple[float, float] | None, seed: int,
                n: int = 200) -> list[float]:
    """p5/p50/p95 cosine between a clip's frames and a planted copy's, in the seeds' PCA space (as searched)."""
    rng = np.random.default_rng(seed + 7)
    clips = gen.gen.clips(rng, n)
    if clip_sigma is not None:
        clips["sigma"] = rng.uniform(*clip_sigma, n).astype(np.float32)
    t = np.arange(CLIP_S, dtype=np.float64)
    cos = []
    for c in range(n):
        a = gen.pca.apply(gen.clip(rng, clips, c, t))
        b = gen.pca.apply(gen.clip(rng, clips, c, t, extra_sigma=sigma))
        cos.append(np.einsum("ij,ij->i", a, b))
    return [float(x) for x in np.percentile(np.concatenate(cos), [5, 50, 95])]


# Runs the CLI's dupes in a child that reports its own peak RSS (VmHWM) on its last stderr line.
CHILD = """import sys
from sora_search.cli import main
try:
    main(sys.argv[1:])
finally:
    hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]
    print(f'VmHWM {hwm}', file=sys.stderr)
"""


def run_dupes(location: Path, threads: int) -> tuple[dict[str, Any], float, int]:
    """``sora-search dupes --json`` in a child: (its output, wall seconds, peak RSS bytes)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SORA_SEARCH_DEVICE="cpu")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "-q", "dupes", "--index", str(location), "--json"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dupes failed: {proc.stderr.strip()}")
    peak = int(proc.stderr.strip().splitlines()[-1].split()[1]) * 1024
    return json.loads(proc.stdout), wall, peak


def judge(report: dict[str, Any], truth: list[tuple[str, str, str]]) -> dict[str, Any]:
    found = {(Path(p["a"]).stem, Path(p["b"]).stem): p for p in report["pairs"]}
    hit = {kind: [0, 0] for kind in ("whole", "excerpt")}
    relation = {"whole": 0, "excerpt": 0}
    for a, b, kind in truth:
        pair = found.get((a, b))
        hit[kind][0] += pair is not None
        hit[kind][1] += 1
        if pair is not None:
            relation[kind] += pair["relation"] == ("same" if kind == "whole" else "a_contains_b")
    planted = {(a, b) for a, b, _ in truth}
    return {"recall": sum(h for h, _ in hit.values()) / max(1, len(truth)),
            "recall_whole": hit["whole"][0] / max(1, hit["whole"][1]),
            "recall_excerpt": hit["excerpt"][0] / max(1, hit["excerpt"][1]),
            "relation_right": sum(relation.values()) / max(1, sum(h for h, _ in hit.values())),
            "pairs": len(found), "other_pairs": len(set(found) - planted), "groups": len(report["groups"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True, help="a sora-search index whose stored vectors are the seeds")
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    ap.add_argument("--planted", type=float, default=0.01, help="share of clips that get a planted copy")
    ap.add_argument("--reencode-sigma", type=float, default=0.1,
                    help="noise a planted copy adds to the clip's own frame noise (faiss_scale's copies: 0.2)")
    ap.add_argument("--clip-sigma", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="range of the clip-wide offset that makes each clip its own footage (faiss_scale's: "
                         "0.25 0.6, under which every second has hundreds of near-copies at 1M)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=HERE.parent / "results" / "dupes-scale")
    ap.add_argument("--keep", action="store_true", help="keep the generated library")
    ap.add_argument("--out", type=Path, default=HERE.parent / "results")
    args = ap.parse_args(argv)
    seeds = load_raw_seeds(args.index)
    gen = RawGenerator(seeds, args.seed)
    result: dict[str, Any] = {"benchmark": "dupes_scale", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "seeds": {"index": str(args.index), "vectors": len(seeds)}, "threads": args.threads,
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "sizes": []}
    library = Library(args.work, gen, args.planted, args.reencode_sigma, args.clip_sigma, args.seed)
    result["reencode_sigma"], result["clip_sigma"] = args.reencode_sigma, args.clip_sigma
    result["copy_cosine"] = copy_cosine(gen, args.reencode_sigma, args.clip_sigma, args.seed)
    print(f"a planted copy's frames against the clip's, projected cosine p5/p50/p95: "
          f"{'/'.join(f'{c:.2f}' for c in result['copy_cosine'])}", file=sys.stderr, flush=True)
    for n in sorted(args.sizes):
        built = library.grow(n)
        print(f"[{n}] {library.vectors} vectors, written in {built['write_s']:.0f} s, index built in "
              f"{built['index_s']:.0f} s", file=sys.stderr, flush=True)
        report, wall, peak = run_dupes(args.work, args.threads)
        row = {"n": n, "vectors": library.vectors, "clips": library.clips, "planted": len(library.truth), **built,
               "dupes_s": wall, "peak_rss_bytes": peak, **judge(report, library.truth)}
        result["sizes"].append(row)
        print(f"[{n}] dupes {wall:.0f} s, peak RSS {peak / 2**20:.0f} MiB, recall {row['recall']:.3f}",
              file=sys.stderr, flush=True)
    library.close()
    if not args.keep:
        shutil.rmtree(args.work)
    sizes = result["sizes"]
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        result["growth_exponent"] = math.log(last["dupes_s"] / first["dupes_s"]) / math.log(
            last["vectors"] / first["vectors"])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"dupes_scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print("| vectors | videos | planted | dupes wall | peak RSS | recall (whole / excerpt) | relation right | "
          "other pairs |\n|---|---|---|---|---|---|---|---|")
    for r in sizes:
        print(f"| {r['vectors']:,} | {r['clips'] + r['planted']:,} | {r['planted']} | {r['dupes_s']:.0f} s | "
              f"{r['peak_rss_bytes'] / 2**20:.0f} MiB | {r['recall']:.3f} ({r['recall_whole']:.3f} / "
              f"{r['recall_excerpt']:.3f}) | {r['relation_right']:.3f} | {r['other_pairs']} |")
    if "growth_exponent" in result:
        print(f"\ntime grows as vectors^{result['growth_exponent']:.2f}")
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
