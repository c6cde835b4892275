"""What the text check's reader costs a frame: tesseract on one thread (as the engine runs it) against its own choice
of OpenMP threads, alternating in one run; both must read the same words.

    python benchmarks/speed/text_reader.py VIDEO [VIDEO...] [--frames 8] [--rounds 3] [--out FILE]

Each VIDEO is read at ``--frames`` times spread over it; the frames are decoded once, up front, so only the reading is
timed. Needs the ``tesseract`` command (Debian: ``tesseract-ocr``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sora_search.errors import TextReaderMissing
from sora_search.query.text import TextReader, grey_picture
from sora_search.thumbs import duration_s

SETTINGS = {"one thread": 1, "tesseract's choice": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--frames", type=int, default=8, help="frames read per video")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each setting")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        readers = {name: TextReader(threads=threads) for name, threads in SETTINGS.items()}
    except TextReaderMissing as exc:
        sys.exit(str(exc))
    params = readers["one thread"].params
    pictures: list[np.ndarray] = []
    for video in args.videos:
        length = duration_s(video)
        pictures += [grey_picture(str(video), (i + 0.5) * length / args.frames, params.read_lines)
                     for i in range(args.frames)]

    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    words: dict[str, list[frozenset[str]]] = {}
    for _ in range(args.rounds):
        for name, reader in readers.items():
            start = time.perf_counter()
            words[name] = [reader.read(p) for p in pictures]
            times[name].append((time.perf_counter() - start) / len(pictures))
    if len({tuple(w) for w in words.values()}) != 1:
        sys.exit("the settings read different words")
    legible = sum(len(w) >= params.min_words for w in words["one thread"])
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:<20} {median[name]:.3f} s a frame (rounds: {', '.join(f'{x:.3f}' for x in t)})")
    ratio = median["tesseract's choice"] / median["one thread"]
    print(f"{len(pictures)} frames, {legible} legible; tesseract's choice takes {ratio:.2f}x one thread's time")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"frames": len(pictures), "legible": legible, "ratio": round(ratio, 3),
                                        "s_per_frame": {n: [round(x, 4) for x in t] for n, t in times.items()}},
                                       indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
