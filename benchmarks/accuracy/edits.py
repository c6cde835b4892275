"""Building blocks of the accuracy benchmark's videos: footage inputs, a filter-graph builder and the query edits.

Everything here only *builds* ffmpeg argument lists (and writes the small PNG overlays an edit needs); running
them is the generator's job. An edit is planned with its random parameters drawn up front, then applied to a
:class:`FilterGraph` at a frame size known in Python, so the generator knows every output size and frame count
without probing a file.

Families (``FAMILIES``) follow the VSC2022 / AugLy query transformations: pixel-level (re-encoding, scaling,
cropping, colour, blur, noise, overlays, padding, aspect, rotation), temporal (speed, frame rate) and the
compositions that hide a copy inside unrelated footage (picture-in-picture, stacking, blending); ``combo`` chains
2-3 of the lighter ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Size = tuple[int, int]

FAMILIES = ("reencode", "downscale", "crop", "hflip", "color", "grayscale", "blur", "noise", "overlay_text",
            "overlay_shapes", "pad", "aspect", "speed", "fps", "rotate", "pip", "stack", "blend", "combo")
# Families ``combo`` chains: no composition with other footage and no change of the time line.
LIGHT = ("reencode", "downscale", "crop", "hflip", "color", "grayscale", "blur", "noise", "overlay_text",
         "overlay_shapes", "pad", "aspect")
MIN_SIDE = 32
WORDS = ("breaking", "news", "live", "exclusive", "subscribe", "wow", "lol", "replay", "funny", "best moments",
         "watch till the end", "2024", "HD", "original", "viral", "like & share", "omg", "part 2", "epic",
         "highlights", "reupload", "full clip", "follow for more", "#trending")


def even(x: float, minimum: int = MIN_SIDE) -> int:
    """Nearest even integer, at least ``minimum`` (libx264 with yuv420p needs even sides)."""
    return max(minimum, int(round(x / 2)) * 2)


def hex_color(rgb: Sequence[int], alpha: float | None = None) -> str:
    """``0xRRGGBB`` or ``0xRRGGBB@alpha``, as ffmpeg's colour options read it."""
    value = "0x" + "".join(f"{int(c):02x}" for c in rgb)
    return value if alpha is None else f"{value}@{alpha:.2f}"


def random_color(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(low, high, size=3))
    return r, g, b


def fit(size: Size) -> str:
    """Filters that scale and centre-crop any frame to exactly ``size`` (no borders, square pixels)."""
    w, h = size
    return f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"


@dataclass(frozen=True)
class Footage:
    """A span of video that ffmpeg reads as one input.

    ``args`` are the input options ending in ``-i``; ``size`` and ``fps`` are those of the frames it yields (before
    any filter), ``duration_s`` how much it yields and ``source`` where it comes from, for the ground truth.
    """

    args: tuple[str, ...]
    size: Size
    fps: float
    duration_s: float
    source: str


def file_footage(path: Path, start_s: float, duration_s: float, size: Size, fps: float, source: str) -> Footage:
    """``duration_s`` seconds of a file from ``start_s`` (input seeking, frame-accurate when re-encoded)."""
    args = ("-ss", f"{start_s:.6f}", "-t", f"{duration_s:.6f}", "-i", str(path))
    return Footage(args, size, fps, duration_s, source)


def lavfi_footage(graph: str, duration_s: float, size: Size, fps: float, source: str) -> Footage:
    """A lavfi source graph (``testsrc2=...``) as an input of ``duration_s`` seconds."""
    return Footage(("-f", "lavfi", "-t", f"{duration_s:.6f}", "-i", graph), size, fps, duration_s, source)


@dataclass
class FilterGraph:
    """A ``-filter_complex`` built chain by chain; labels are generated, inputs numbered in order of addition."""

    inputs: list[tuple[str, ...]] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    _next: int = 0

    def input(self, args: Sequence[str]) -> str:
        self.inputs.append(tuple(args))
        return f"[{len(self.inputs) - 1}:v]"

    def image(self, path: Path) -> str:
        """A still image input (one frame; ``overlay`` repeats it to the end of the main input)."""
        return self.input(("-i", str(path)))

    def add(self, sources: str | Sequence[str], filters: str) -> str:
        label = f"[v{self._next}]"
        self._next += 1
        src = sources if isinstance(sources, str) else "".join(sources)
        self.chains.append(f"{src}{filters}{label}")
        return label

    def argv(self, out: str) -> list[str]:
        """Input arguments, the graph and the ``-map`` of its output label."""
        args = [a for inp in self.inputs for a in inp]
        return [*args, "-filter_complex", ";".join(self.chains), "-map", out]


Apply = Callable[[FilterGraph, str, Size], tuple[str, Size]]


@dataclass(frozen=True)
class Edit:
    """One planned transformation: ``apply`` adds its filters to a graph at a known frame size.

    ``speed`` > 1 plays faster (query duration = reference duration / speed); ``fps`` is the frame rate the edit
    imposes on the output; ``encoder`` replaces the default x264 rate control (heavy re-encoding).
    """

    label: str
    apply: Apply
    speed: float = 1.0
    fps: float | None = None
    encoder: tuple[str, ...] | None = None


def _simple(label: str, filters: Callable[[Size], tuple[str, Size]]) -> Edit:
    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        chain, out = filters(size)
        return g.add(src, chain), out
    return Edit(label, apply)


# --- single edits ---------------------------------------------------------------------------------------------

def reencode(rng: np.random.Generator) -> Edit:
    if rng.random() < 0.5:
        crf = int(rng.integers(40, 49))
        return Edit(f"reencode(crf={crf})", lambda g, s, z: (s, z), encoder=("-crf", str(crf)))
    kbps = int(rng.integers(30, 121))
    return Edit(f"reencode({kbps}k)", lambda g, s, z: (s, z),
                encoder=("-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k"))


def downscale(rng: np.random.Generator) -> Edit:
    f = float(rng.uniform(0.2, 0.5))
    return _simple(f"downscale({f:.2f})", lambda z: (f"scale={even(z[0] * f)}:{even(z[1] * f)}",
                                                      (even(z[0] * f), even(z[1] * f))))


def crop(rng: np.random.Generator) -> Edit:
    kw, kh = (float(v) for v in rng.uniform(0.5, 0.8, size=2))
    ox, oy = (float(v) for v in rng.random(2))

    def filters(z: Size) -> tuple[str, Size]:
        w, h = even(z[0] * kw), even(z[1] * kh)
        x, y = int((z[0] - w) * ox), int((z[1] - h) * oy)
        return f"crop={w}:{h}:{x}:{y}", (w, h)
    return _simple(f"crop({kw:.2f}x{kh:.2f}@{ox:.2f},{oy:.2f})", filters)


def hflip(rng: np.random.Generator) -> Edit:
    return _simple("hflip", lambda z: ("hflip", z))


def color(rng: np.random.Generator) -> Edit:
    b = float(rng.uniform(-0.25, 0.25))
    c = float(rng.uniform(0.6, 1.5))
    s = float(rng.choice([rng.uniform(0.3, 0.7), rng.uniform(1.4, 2.2)]))
    hue = float(rng.uniform(-120, 120))
    return _simple(f"color(b={b:.2f},c={c:.2f},s={s:.2f},h={hue:.0f})",
                   lambda z: (f"eq=brightness={b:.3f}:contrast={c:.3f}:saturation={s:.3f},hue=h={hue:.1f}", z))


def grayscale(rng: np.random.Generator) -> Edit:
    return _simple("grayscale", lambda z: ("hue=s=0", z))


def blur(rng: np.random.Generator) -> Edit:
    sigma = float(rng.uniform(2, 6))
    return _simple(f"blur({sigma:.1f})", lambda z: (f"gblur=sigma={sigma:.2f}", z))


def noise(rng: np.random.Generator) -> Edit:
    strength = int(rng.integers(15, 41))
    # The noise filter seeds itself with a constant, so the same graph gives the same pixels.
    return _simple(f"noise({strength})", lambda z: (f"noise=alls={strength}:allf=t+u", z))


def render_text_png(path: Path, size: Size, lines: Sequence[str], *, font_px: int, fill: tuple[int, int, int],
                    position: tuple[float, float], stroke: int, box: tuple[int, int, int] | None) -> None:
    """A transparent ``size`` PNG with ``lines`` drawn by Pillow's bundled font (no system fonts needed)."""
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    text = "\n".join(lines)
    while True:  # shrink the font until the text fits the frame's width
        font = ImageFont.load_default(size=font_px)
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke)
        if right - left <= 0.95 * size[0] or font_px <= 8:
            break
        font_px = max(8, int(font_px * 0.85))
    tw, th = right - left, bottom - top
    x = int(max(0, size[0] - tw) * position[0]) - left
    y = int(max(0, size[1] - th) * position[1]) - top
    if box is not None:
        pad = max(2, font_px // 4)
        draw.rectangle((x + left - pad, y + top - pad, x + right + pad, y + bottom + pad), fill=(*box, 150))
    draw.multiline_text((x, y), text, font=font, fill=(*fill, 255), stroke_width=stroke,
                        stroke_fill=(0, 0, 0, 255))
    img.save(path)


def overlay_png(label: str, path: Path, render: Callable[[Path, Size], None]) -> Edit:
    """Overlay a full-frame RGBA PNG, rendered at the frame size the edit meets."""
    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        render(path, size)
        png = g.image(path)
        return g.add([src, png], "overlay=0:0:format=auto"), size
    return Edit(label, apply)


def overlay_text(rng: np.random.Generator, asset: Path) -> Edit:
    n_lines = int(rng.integers(1, 4))
    lines = [" ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False))
             for _ in range(n_lines)]
    lines[0] = lines[0].upper() if rng.random() < 0.5 else lines[0]
    height_frac = float(rng.uniform(0.06, 0.14))
    fill = random_color(rng, 80)
    pos = (float(rng.random()), float(rng.random()))
    box = random_color(rng, 0, 120) if rng.random() < 0.4 else None

    def render(path: Path, size: Size) -> None:
        render_text_png(path, size, lines, font_px=max(10, int(size[1] * height_frac)), fill=fill, position=pos,
                        stroke=max(1, int(size[1] * height_frac / 12)), box=box)
    return overlay_png(f"overlay_text({len(lines)} lines,{height_frac:.2f}h)", asset, render)


def _emoji(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, rgb: tuple[int, int, int]) -> None:
    if kind == "smiley":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*rgb, 255), outline=(0, 0, 0, 255),
                     width=max(1, int(r / 12)))
        for dx in (-0.35, 0.35):
            e = r * 0.13
            draw.ellipse((cx + dx * r - e, cy - 0.3 * r - e, cx + dx * r + e, cy - 0.3 * r + e), fill=(0, 0, 0, 255))
        draw.arc((cx - 0.55 * r, cy - 0.45 * r, cx + 0.55 * r, cy + 0.6 * r), 20, 160, fill=(0, 0, 0, 255),
                 width=max(1, int(r / 10)))
    elif kind == "heart":
        q = r / 2
        draw.ellipse((cx - r, cy - r * 0.6, cx, cy + r * 0.4 - q / 2), fill=(*rgb, 255))
        draw.ellipse((cx, cy - r * 0.6, cx + r, cy + r * 0.4 - q / 2), fill=(*rgb, 255))
        draw.polygon([(cx - r * 0.97, cy - 0.05 * r), (cx + r * 0.97, cy - 0.05 * r), (cx, cy + r)], fill=(*rgb, 255))
    else:  # star
        pts = []
        for i in range(10):
            a = -math.pi / 2 + i * math.pi / 5
            rr = r if i % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        draw.polygon(pts, fill=(*rgb, 255), outline=(0, 0, 0, 255))


def overlay_shapes(rng: np.random.Generator, asset: Path) -> Edit:
    """Filled boxes (ffmpeg drawbox) plus emoji-like stickers (a Pillow PNG)."""
    boxes: list[tuple[float, float, float, float, str]] = []
    for _ in range(int(rng.integers(1, 4))):
        x, y = (float(v) for v in rng.uniform(0, 0.8, size=2))
        bw, bh = (float(v) for v in rng.uniform(0.08, 0.3, size=2))
        boxes.append((x, y, bw, bh, hex_color(random_color(rng), float(rng.uniform(0.5, 1.0)))))
    stickers = [(str(rng.choice(["smiley", "heart", "star"])), float(rng.uniform(0.1, 0.9)),
                 float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.06, 0.16)), random_color(rng, 60))
                for _ in range(int(rng.integers(1, 4)))]

    def render(path: Path, size: Size) -> None:
        img = Image.new("RGBA", size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(img)
        for kind, fx, fy, fr, rgb in stickers:
            _emoji(draw, kind, fx * size[0], fy * size[1], fr * min(size), rgb)
        img.save(path)

    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        w, h = size
        draws = ",".join(f"drawbox=x={int(x * w)}:y={int(y * h)}:w={max(2, int(bw * w))}:h={max(2, int(bh * h))}:"
                         f"color={c}:t=fill" for x, y, bw, bh, c in boxes)
        render(asset, size)
        png = g.image(asset)
        return g.add([g.add(src, draws), png], "overlay=0:0:format=auto"), size
    return Edit(f"overlay_shapes({len(boxes)} boxes,{len(stickers)} stickers)", apply)


def pad(rng: np.random.Generator) -> Edit:
    mode = str(rng.choice(["letterbox", "pillarbox", "both"]))
    frac = float(rng.uniform(0.1, 0.3))
    fill = (0, 0, 0) if rng.random() < 0.6 else random_color(rng)

    def filters(z: Size) -> tuple[str, Size]:
        bx = even(z[0] * frac, 2) if mode != "letterbox" else 0
        by = even(z[1] * frac, 2) if mode != "pillarbox" else 0
        out = (z[0] + 2 * bx, z[1] + 2 * by)
        return f"pad={out[0]}:{out[1]}:{bx}:{by}:color={hex_color(fill)}", out
    return _simple(f"pad({mode},{frac:.2f})", filters)


def aspect(rng: np.random.Generator) -> Edit:
    factor = float(rng.choice([rng.uniform(0.6, 0.8), rng.uniform(1.25, 1.6)]))
    axis = str(rng.choice(["w", "h"]))

    def filters(z: Size) -> tuple[str, Size]:
        out = (even(z[0] * factor), z[1]) if axis == "w" else (z[0], even(z[1] * factor))
        return f"scale={out[0]}:{out[1]},setsar=1", out
    return _simple(f"aspect({axis}*{factor:.2f})", filters)


def speed(rng: np.random.Generator) -> Edit:
    while True:
        factor = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        if abs(np.log(factor)) >= np.log(1.2):
            break
    factor = round(factor, 3)

    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        return g.add(src, f"setpts=(PTS-STARTPTS)/{factor}"), size
    return Edit(f"speed({factor})", apply, speed=factor)


def frame_rate(rng: np.random.Generator) -> Edit:
    fps = float(rng.choice([5, 6, 8, 10, 60]))

    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        return g.add(src, f"fps={fps:g}"), size
    return Edit(f"fps({fps:g})", apply, fps=fps)


def rotate(rng: np.random.Generator) -> Edit:
    if rng.random() < 0.5:
        quarter = int(rng.integers(1, 4))
        chain = {1: "transpose=clock", 2: "hflip,vflip", 3: "transpose=cclock"}[quarter]
        return _simple(f"rotate({90 * quarter})",
                       lambda z: (chain, (z[1], z[0]) if quarter % 2 else z))
    angle = float(rng.uniform(5, 25)) * float(rng.choice([-1, 1]))
    fill = (0, 0, 0) if rng.random() < 0.5 else random_color(rng)
    return _simple(f"rotate({angle:.1f})",
                   lambda z: (f"rotate={math.radians(angle):.5f}:fillcolor={hex_color(fill)}", z))


def _background(g: FilterGraph, bg: Footage, size: Size, fps: float) -> str:
    label = g.input(bg.args)
    return g.add(label, f"setpts=PTS-STARTPTS,{fit(size)},fps={fps:g},format=yuv420p")


def pip(rng: np.random.Generator, bg: Footage, fps: float) -> Edit:
    """The copy scaled to 30-50% of the frame width over unrelated footage at a random place."""
    frac = float(rng.uniform(0.3, 0.5))
    pos = (float(rng.random()), float(rng.random()))

    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        w, h = size
        cw, ch = even(w * frac), even(h * frac)
        back = _background(g, bg, size, fps)
        small = g.add(src, f"scale={cw}:{ch},fps={fps:g},format=yuv420p")
        x, y = int((w - cw) * pos[0]), int((h - ch) * pos[1])
        return g.add([back, small], f"overlay={x}:{y}:shortest=1:eof_action=endall"), size
    return Edit(f"pip({frac:.2f}@{pos[0]:.2f},{pos[1]:.2f})", apply)


def stack(rng: np.random.Generator, bg: Footage, fps: float) -> Edit:
    """The copy beside (hstack) or above/below (vstack) unrelated footage of the same size, in random order."""
    axis = str(rng.choice(["hstack", "vstack"]))
    copy_first = bool(rng.random() < 0.5)

    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        # Tiles no longer than 640 px, so a stacked query is no bigger than 1280 px on its long side.
        scale = min(1.0, 640 / max(size))
        tile = (even(size[0] * scale), even(size[1] * scale))
        back = _background(g, bg, tile, fps)
        copy = g.add(src, f"scale={tile[0]}:{tile[1]},setsar=1,fps={fps:g},format=yuv420p")
        pair = [copy, back] if copy_first else [back, copy]
        out = (tile[0] * 2, tile[1]) if axis == "hstack" else (tile[0], tile[1] * 2)
        return g.add(pair, f"{axis}=inputs=2:shortest=1"), out
    return Edit(f"stack({axis},{'copy first' if copy_first else 'copy second'})", apply)


def blend(rng: np.random.Generator, bg: Footage, fps: float) -> Edit:
    """The copy mixed with unrelated footage; the copy's opacity is 0.5-0.7."""
    opacity = float(rng.uniform(0.5, 0.7))

    def apply(g: FilterGraph, src: str, size: Size) -> tuple[str, Size]:
        back = _background(g, bg, size, fps)
        copy = g.add(src, f"fps={fps:g},format=yuv420p")
        return g.add([copy, back], f"blend=all_mode=normal:all_opacity={opacity:.3f}:shortest=1"), size
    return Edit(f"blend({opacity:.2f})", apply)


@dataclass
class EditContext:
    """What sampling an edit needs besides its random generator: where overlay PNGs go, and unrelated footage."""

    rng: np.random.Generator
    assets: Path
    prefix: str
    background: Callable[[float], Footage]
    _assets: int = 0

    def asset(self) -> Path:
        self._assets += 1
        return self.assets / f"{self.prefix}-{self._assets}.png"


def sample_family(family: str, ctx: EditContext, *, duration_s: float, fps: float) -> list[Edit]:
    """Random edits of one family for a copy of ``duration_s`` seconds at ``fps`` (before the edits)."""
    rng = ctx.rng
    simple: dict[str, Callable[[np.random.Generator], Edit]] = {
        "reencode": reencode, "downscale": downscale, "crop": crop, "hflip": hflip, "color": color,
        "grayscale": grayscale, "blur": blur, "noise": noise, "pad": pad, "aspect": aspect, "speed": speed,
        "fps": frame_rate, "rotate": rotate}
    if family in simple:
        return [simple[family](rng)]
    if family == "overlay_text":
        return [overlay_text(rng, ctx.asset())]
    if family == "overlay_shapes":
        return [overlay_shapes(rng, ctx.asset())]
    if family in ("pip", "stack", "blend"):
        bg = ctx.background(duration_s)
        return [{"pip": pip, "stack": stack, "blend": blend}[family](rng, bg, fps)]
    if family == "combo":
        picked = [str(f) for f in rng.choice(LIGHT, size=int(rng.integers(2, 4)), replace=False)]
        # Re-encoding acts on the whole output, so it goes last where it reads naturally in the label.
        picked.sort(key=lambda f: f == "reencode")
        return [e for f in picked for e in sample_family(f, ctx, duration_s=duration_s, fps=fps)]
    raise ValueError(f"unknown edit family {family!r}; expected one of {', '.join(FAMILIES)}")


@dataclass(frozen=True)
class QueryVideo:
    """An assembled query: ffmpeg arguments and its frame counts (lead footage, the copy, tail footage)."""

    argv: list[str]
    size: Size
    fps: float
    lead_frames: int
    copy_frames: int
    tail_frames: int

    @property
    def duration_s(self) -> float:
        return (self.lead_frames + self.copy_frames + self.tail_frames) / self.fps


def encoder_args(crf: int, override: tuple[str, ...] | None = None) -> list[str]:
    """libx264 settings shared by every generated file; bit-exact so a seed gives the same bytes on any machine."""
    rate = list(override) if override is not None else ["-crf", str(crf)]
    return ["-an", "-c:v", "libx264", "-preset", "veryfast", *rate, "-pix_fmt", "yuv420p", "-threads", "1",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]


def exact_frames(fps: float, frames: int) -> str:
    """Constant ``fps`` and exactly ``frames`` frames: a short tail is padded with clones, a long one cut."""
    return f"fps={fps:g},tpad=stop_mode=clone:stop=3,trim=end_frame={frames},setpts=PTS-STARTPTS"


def build_query(main: Footage, edits: Sequence[Edit], out: Path, *, crf: int, start_size: Size | None = None,
                start_fps: float | None = None, lead: Footage | None = None, lead_s: float = 0.0,
                tail: Footage | None = None, tail_s: float = 0.0) -> QueryVideo:
    """The ffmpeg command for ``main`` under ``edits``, optionally between ``lead`` and ``tail`` footage.

    ``start_size`` and ``start_fps`` bring ``main`` to that format (scaled and centre-cropped) before the edits.
    ``lead``/``tail`` must yield at least ``lead_s``/``tail_s`` seconds; they are cut to whole frames of the
    output rate so the copy starts exactly at ``lead_frames / fps``.
    """
    g = FilterGraph()
    size = start_size or main.size
    fps = start_fps or main.fps
    start = ["setpts=PTS-STARTPTS"]
    if start_size is not None:
        start.append(fit(start_size))
    if start_fps is not None:
        start.append(f"fps={start_fps:g}")
    label = g.add(g.input(main.args), ",".join(start))
    for e in edits:
        label, size = e.apply(g, label, size)
    speed_factor = 1.0
    for e in edits:
        fps = e.fps if e.fps is not None else fps
        speed_factor *= e.speed
    size = (even(size[0]), even(size[1]))
    copy_frames = max(1, int(round(main.duration_s / speed_factor * fps)))
    label = g.add(label, f"scale={size[0]}:{size[1]},setsar=1,format=yuv420p,{exact_frames(fps, copy_frames)}")
    parts = [label]
    lead_frames = tail_frames = 0
    for footage, seconds, before in ((lead, lead_s, True), (tail, tail_s, False)):
        if footage is None:
            continue
        frames = int(round(seconds * fps))
        part = g.add(g.input(footage.args), f"setpts=PTS-STARTPTS,{fit(size)},format=yuv420p,"
                                            f"{exact_frames(fps, frames)}")
        if before:
            lead_frames = frames
            parts.insert(0, part)
        else:
            tail_frames = frames
            parts.append(part)
    if len(parts) > 1:
        label = g.add(parts, f"concat=n={len(parts)}:v=1:a=0")
    override = next((e.encoder for e in reversed(edits) if e.encoder is not None), None)
    argv = [*g.argv(label), *encoder_args(crf, override), "-r", f"{fps:g}", str(out)]
    return QueryVideo(argv, size, fps, lead_frames, copy_frames, tail_frames)
