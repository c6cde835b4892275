"""Build a small demo library with PyAV (ffmpeg's own test sources; nothing is downloaded or committed).

    python examples/make_demo.py demo

writes ``demo/library/`` (six 40-second videos: a Mandelbrot zoom, Game of Life, a cellular automaton, gradients,
a Sierpinski carpet and ffmpeg's test pattern), ``demo/clip.mp4`` (seconds 12-22 of ``library/mandelbrot.mp4``
re-encoded at half size with strong compression) and ``demo/unrelated.mp4`` (footage that is not in the library).
Then:

    sora-search index demo/library
    sora-search query demo/clip.mp4          # mandelbrot.mp4 first: clip 00:00-00:10 <-> library 00:12-00:22
    sora-search query demo/unrelated.mp4     # no match
"""

from __future__ import annotations

import sys
from pathlib import Path

import av

SIZE, FPS = "320x240", 25
LIBRARY = {
    "mandelbrot": "mandelbrot=start_x=-0.743643887037151:start_y=0.131825904205330:start_scale=2",
    "life": "life=seed=5:mold=10:ratio=0.2:mold_color=#204060:life_color=#e0c080",
    "cellauto": "cellauto=rule=110:seed=2",
    # gradients' colours are random unless given, whatever the seed
    "gradients": "gradients=seed=3:speed=0.02:n=5:c0=#d04020:c1=#20a0d0:c2=#e0d040:c3=#302080:c4=#40c060",
    "sierpinski": "sierpinski=seed=4:jump=10",
    "testsrc": "testsrc2",
}
UNRELATED = "zoneplate=k0=60:kx2=40:ky2=40:kt=5"  # moving rings (ku/kv alone give a flat, flickering frame)


def write_video(dst: Path, source: str, *, start_s: float = 0.0, seconds: float = 40.0, scale: float = 1.0,
                crf: int = 23) -> None:
    """Render ``seconds`` of an ffmpeg lavfi ``source`` from ``start_s`` into an H.264 file."""
    spec = f"{source}{':' if '=' in source else '='}size={SIZE}:rate={FPS}"
    with av.open(spec, format="lavfi") as src, av.open(str(dst), "w") as out:
        w, h = (int(v) for v in SIZE.split("x"))
        w, h = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
        stream = out.add_stream("libx264", rate=FPS, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        first, last = int(round(start_s * FPS)), int(round((start_s + seconds) * FPS))
        for i, frame in enumerate(src.decode(video=0)):
            if i >= last:
                break
            if i >= first:
                out.mux(stream.encode(frame.reformat(width=w, height=h, format="yuv420p")))
        out.mux(stream.encode())


def main(root: str) -> None:
    base = Path(root)
    (base / "library").mkdir(parents=True, exist_ok=True)
    for name, source in LIBRARY.items():
        write_video(base / "library" / f"{name}.mp4", source)
    write_video(base / "clip.mp4", LIBRARY["mandelbrot"], start_s=12, seconds=10, scale=0.5, crf=32)
    write_video(base / "unrelated.mp4", UNRELATED, seconds=10)
    print(f"demo library in {base / 'library'}; probes {base / 'clip.mp4'} and {base / 'unrelated.mp4'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo")
