"""Synthetic test media made with ffmpeg (argument lists, no shell). Nothing here is committed media."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

FFMPEG = shutil.which("ffmpeg")


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr on failure."""
    if FFMPEG is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    proc = subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.strip()}")


def make_testsrc(path: Path, duration_s: float, *, size: tuple[int, int] = (320, 240), fps: int = 25,
                 pattern: str = "testsrc2", codec: str = "libx264") -> Path:
    """A lavfi test pattern clip (``testsrc2``, ``mandelbrot``, ``smptebars``, ``life``…)."""
    ffmpeg("-f", "lavfi", "-i", lavfi_source(pattern, size, fps), "-t", f"{duration_s}", "-c:v", codec,
           "-pix_fmt", "yuv420p", "-g", str(fps * 2), str(path))
    return path


def lavfi_source(pattern: str, size: tuple[int, int], fps: int, *, seed: int = 7) -> str:
    """An ffmpeg lavfi source; ``life`` starts from a random grid, so it gets a fixed ``seed`` (ffmpeg's default is
    a new one each run), and ``gradients`` also fixed colours (its default colours are random whatever the seed)."""
    w, h = size
    spec = f"{pattern}=size={w}x{h}:rate={fps}"
    if pattern == "life":
        spec += f":seed={seed}"
    elif pattern == "gradients":
        spec += f":seed={seed}:c0=#d04020:c1=#20a0d0:c2=#e0d040:c3=#302080"
    return spec


def save_photo(path: Path, image: np.ndarray) -> Path:
    """Write an (h, w, 3) uint8 RGB array as a PNG through ffmpeg's rawvideo input."""
    h, w, _ = image.shape
    raw = path.with_suffix(".rgb")
    raw.write_bytes(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", str(raw), str(path))
    raw.unlink()
    return path


def make_photo_clip(path: Path, photos: Sequence[Path], seconds_per_photo: float = 4.0, *,
                    size: tuple[int, int] = (320, 240), fps: int = 25, zoom_speed: float = 0.0015) -> Path:
    """A camera-motion clip: slow pan and zoom across each photo, hard cuts between photos."""
    w, h = size
    frames = int(round(seconds_per_photo * fps))
    args: list[str] = []
    chains = []
    for i, photo in enumerate(photos):
        args += ["-i", str(photo)]
        # One still in, ``frames`` frames out (zoompan emits d frames per input frame). Upscale first so the pan
        # has pixels to move across; alternate the pan direction per photo.
        x = "iw/2-(iw/zoom/2)+on*2" if i % 2 == 0 else "iw/2-(iw/zoom/2)-on*2"
        chains.append(
            f"[{i}:v]scale={w * 2}:{h * 2},zoompan=z='min(zoom+{zoom_speed},1.5)':x='{x}':"
            f"y='ih/2-(ih/zoom/2)':d={frames}:s={w}x{h}:fps={fps},setsar=1,format=yuv420p[v{i}]"
        )
    concat = "".join(f"[v{i}]" for i in range(len(photos))) + f"concat=n={len(photos)}:v=1:a=0[out]"
    ffmpeg(*args, "-filter_complex", ";".join(chains + [concat]), "-map", "[out]", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-r", str(fps), str(path))
    return path


def cut(src: Path, dst: Path, start_s: float, duration_s: float, *, scale: float | None = None,
        crf: int = 30, extra_vf: str | None = None) -> Path:
    """Re-encode ``duration_s`` seconds of ``src`` from ``start_s``, optionally downscaled by ``scale``."""
    vf = []
    if scale is not None:
        vf.append(f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2")
    if extra_vf:
        vf.append(extra_vf)
    args = ["-ss", f"{start_s}", "-i", str(src), "-t", f"{duration_s}"]
    if vf:
        args += ["-vf", ",".join(vf)]
    ffmpeg(*args, "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", "-an", str(dst))
    return dst


def concat(parts: Sequence[Path], dst: Path, *, size: tuple[int, int] = (320, 240), fps: int = 25,
           crf: int = 23) -> Path:
    """The clips ``parts`` one after another, each scaled to ``size`` at ``fps``, re-encoded into one file."""
    w, h = size
    args: list[str] = []
    for part in parts:
        args += ["-i", str(part)]
    chains = [f"[{i}:v]scale={w}:{h},setsar=1,fps={fps},format=yuv420p[v{i}]" for i in range(len(parts))]
    joined = "".join(f"[v{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=1:a=0[out]"
    ffmpeg(*args, "-filter_complex", ";".join(chains + [joined]), "-map", "[out]", "-c:v", "libx264",
           "-crf", str(crf), "-pix_fmt", "yuv420p", "-an", str(dst))
    return dst


def picture_in_picture(copy: Path, dst: Path, start_s: float, duration_s: float, *, frac: float, x: float,
                       y: float, background: str = "life", seed: int = 7,
                       size: tuple[int, int] = (320, 240)) -> Path:
    """``duration_s`` seconds of ``copy`` from ``start_s``, scaled to ``frac`` of the frame, over a lavfi pattern.

    ``x`` and ``y`` place the inset's top-left corner as fractions of the free space (0: left/top, 1: right/bottom);
    :func:`inset_box` gives where that puts it.
    """
    ox, oy, cw, ch = _inset_pixels(size, frac, x, y)
    graph = (f"{lavfi_source(background, size, 25, seed=seed)},format=yuv420p[bg];"
             f"[0:v]setpts=PTS-STARTPTS,scale={cw}:{ch},fps=25[ins];"
             f"[bg][ins]overlay={ox}:{oy}:shortest=1,format=yuv420p[out]")
    ffmpeg("-ss", f"{start_s}", "-t", f"{duration_s}", "-i", str(copy), "-filter_complex", graph, "-map", "[out]",
           "-t", f"{duration_s}", "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", "-an", str(dst))
    return dst


def _inset_pixels(size: tuple[int, int], frac: float, x: float, y: float) -> tuple[int, int, int, int]:
    """(left, top, width, height) in pixels of :func:`picture_in_picture`'s inset; its sides even, for yuv420p."""
    w, h = size
    cw, ch = int(w * frac) // 2 * 2, int(h * frac) // 2 * 2
    return int((w - cw) * x), int((h - ch) * y), cw, ch


def inset_box(frac: float, x: float, y: float, size: tuple[int, int] = (320, 240)) -> tuple[float, ...]:
    """(x, y, w, h) in fractions of the frame of the inset that :func:`picture_in_picture` makes."""
    ox, oy, cw, ch = _inset_pixels(size, frac, x, y)
    return ox / size[0], oy / size[1], cw / size[0], ch / size[1]


def skimage_photos(dst_dir: Path, names: Sequence[str] = ("chelsea", "astronaut", "coffee", "rocket",
                                                              "stereo_motorcycle", "immunohistochemistry")) -> list[Path]:
    """Real photos bundled with scikit-image (a test dependency), written as PNG files."""
    from skimage import data

    dst_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        img = getattr(data, name)()
        if isinstance(img, tuple):
            img = img[0]
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append(save_photo(dst_dir / f"{name}.png", img[..., :3].astype(np.uint8)))
    return out
