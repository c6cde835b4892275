"""Rendered recordings for the split benchmark: screen-like low-motion footage and fast camera moves.

Every random choice is drawn at plan time into a frozen spec (a :class:`Deck`, a :class:`Document`...); making
the video only draws PNGs with Pillow's bundled font and runs ffmpeg, so a spec gives the same bytes every time.

- ``lecture``: a slide deck recorded from the screen. Bullets appear one at a time every 1.5-4 s, a laser
  pointer drifts slowly; nothing else moves.
- ``document``: a long page of headings, paragraphs and the odd figure, scrolled slowly (6-24 px/s).
- ``presenter``: slides filling the frame with a webcam-like inset of a photo in a corner that barely moves
  (a zoom breathing by 1-2%).
- ``fast``: a photo clip with fast camera moves (zooms to 2x and pans across the photo in 0.8-2 s) and hard cuts.

A recording is made once, longer than a reference: the benchmark indexes one stretch of it and keeps a later
stretch out of the library as a hard negative (the same screen, template, room or camera; other content).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import edits as E

Size = tuple[int, int]

WORDS = ("model", "data", "signal", "frequency", "matrix", "vector", "gradient", "loss", "network", "layer",
         "energy", "system", "control", "feedback", "stability", "sample", "estimate", "variance", "bias",
         "theorem", "proof", "lemma", "kernel", "basis", "projection", "eigenvalue", "spectrum", "filter",
         "convolution", "channel", "noise", "bandwidth", "protocol", "latency", "cache", "memory", "thread",
         "compiler", "graph", "tree", "search", "sorting", "complexity", "bound", "optimal", "greedy", "dynamic",
         "program", "market", "price", "demand", "supply", "cell", "protein", "enzyme", "reaction", "molecule",
         "climate", "ocean", "carbon", "history", "empire", "trade", "language", "grammar", "syntax", "meaning",
         "the", "of", "and", "for", "with", "under", "over", "between", "each", "every", "a", "is", "are", "why",
         "how", "when", "first", "second", "next", "example", "definition", "summary", "review", "question")
TITLES = ("Introduction", "Motivation", "Overview", "Definitions", "Main result", "Example", "Proof sketch",
          "Algorithm", "Analysis", "Experiments", "Results", "Discussion", "Limitations", "Related work",
          "Exercise", "Recap", "Outlook", "Questions", "Case study", "Key idea", "Notation", "Setup")


def _sentence(rng: np.random.Generator, lo: int, hi: int) -> str:
    words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(lo, hi + 1)))]
    words[0] = words[0].capitalize()
    return " ".join(words)


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, px))


def _rgb(values: Iterable[Any]) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in values)
    return r, g, b


@dataclass(frozen=True)
class Theme:
    """A deck's or document's look: colours, layout and the text in its header and footer."""

    background: tuple[int, int, int]
    text: tuple[int, int, int]
    accent: tuple[int, int, int]
    banner: bool  # a coloured title band across the top, or a plain title with an accent rule under it
    logo: int  # 0: none, 1: a disc, 2: a square, top right
    footer: str

    @staticmethod
    def sample(rng: np.random.Generator) -> Theme:
        dark = bool(rng.random() < 0.35)
        if dark:
            background = _rgb(rng.integers(10, 60, 3))
            text = _rgb(rng.integers(200, 256, 3))
        else:
            background = _rgb(rng.integers(225, 256, 3))
            text = _rgb(rng.integers(0, 50, 3))
        return Theme(background, text, _rgb(rng.integers(0, 256, 3)), bool(rng.random() < 0.5),
                     int(rng.integers(0, 3)), f"{rng.choice(TITLES)} of {rng.choice(WORDS[:60])}s - "
                                              f"lecture {int(rng.integers(1, 25))}")


@dataclass(frozen=True)
class Slide:
    """A slide's title and bullets, and how long each state (title alone, then one more bullet) is shown."""

    title: str
    bullets: tuple[str, ...]
    state_s: tuple[float, ...]  # len(bullets) + 1

    @property
    def seconds(self) -> float:
        return sum(self.state_s)


@dataclass(frozen=True)
class Deck:
    """A lecture: a theme, slides, and a laser pointer's slow drift (relative amplitudes and periods)."""

    theme: Theme
    slides: tuple[Slide, ...]
    pointer: tuple[float, float, float, float, float, float]  # x0, ax, tx, y0, ay, ty

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.slides)

    def states(self) -> list[tuple[int, int, float]]:
        """(slide, bullets shown, seconds) in order."""
        return [(i, k, d) for i, s in enumerate(self.slides) for k, d in enumerate(s.state_s)]


def sample_deck(rng: np.random.Generator, seconds: float) -> Deck:
    """A deck whose states last at least ``seconds`` in all."""
    theme = Theme.sample(rng)
    slides: list[Slide] = []
    total = 0.0
    while total < seconds:
        n = int(rng.integers(2, 6))
        bullets = tuple(_sentence(rng, 3, 8) for _ in range(n))
        state_s = tuple(round(float(v), 2) for v in rng.uniform(1.5, 4.0, size=n + 1))
        slides.append(Slide(f"{rng.choice(TITLES)}: {_sentence(rng, 1, 3).lower()}", bullets, state_s))
        total += sum(state_s)
    x0, y0 = (float(v) for v in rng.uniform(0.3, 0.7, 2))
    ax, ay = (float(v) for v in rng.uniform(0.05, 0.2, 2))
    tx, ty = (float(v) for v in rng.uniform(6, 15, 2))
    return Deck(theme, tuple(slides), (x0, ax, tx, y0, ay, ty))


def draw_slide(deck: Deck, index: int, shown: int, size: Size) -> Image.Image:
    """Slide ``index`` of ``deck`` with its first ``shown`` bullets, at ``size``."""
    t = deck.theme
    slide = deck.slides[index]
    w, h = size
    img = Image.new("RGB", size, t.background)
    d = ImageDraw.Draw(img)
    title_px = max(12, h // 14)
    body_px = max(10, h // 24)
    if t.banner:
        d.rectangle((0, 0, w, int(h * 0.16)), fill=t.accent)
        d.text((int(w * 0.05), int(h * 0.04)), slide.title, font=_font(title_px), fill=t.background)
    else:
        d.text((int(w * 0.05), int(h * 0.05)), slide.title, font=_font(title_px), fill=t.text)
        d.rectangle((int(w * 0.05), int(h * 0.15), int(w * 0.6), int(h * 0.15) + max(2, h // 160)), fill=t.accent)
    if t.logo:
        r = h // 22
        box = (w - int(w * 0.04) - 2 * r, int(h * 0.03), w - int(w * 0.04), int(h * 0.03) + 2 * r)
        (d.ellipse if t.logo == 1 else d.rectangle)(box, fill=t.accent if t.banner is False else t.text)
    font = _font(body_px)
    y = int(h * 0.22)
    for bullet in slide.bullets[:shown]:
        d.ellipse((int(w * 0.06), y + body_px // 3, int(w * 0.06) + body_px // 2, y + body_px // 3 + body_px // 2),
                  fill=t.accent)
        d.text((int(w * 0.09), y), bullet, font=font, fill=t.text)
        y += int(body_px * 1.8)
    foot = _font(max(8, h // 40))
    d.text((int(w * 0.05), int(h * 0.93)), t.footer, font=foot, fill=t.text)
    d.text((int(w * 0.92), int(h * 0.93)), str(index + 1), font=foot, fill=t.text)
    return img


def _pointer_png(path: Path, size: Size) -> None:
    r = max(3, min(size) // 60)
    img = Image.new("RGBA", (4 * r, 4 * r), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((r, r, 3 * r, 3 * r), fill=(255, 30, 30, 230))
    d.ellipse((0, 0, 4 * r - 1, 4 * r - 1), outline=(255, 80, 80, 90), width=max(1, r // 2))
    img.save(path)


def _slides_input(deck: Deck, size: Size, work: Path, tag: str) -> tuple[str, ...]:
    """Draw every state of ``deck`` and return input arguments that show them in turn (concat demuxer)."""
    lines = ["ffconcat version 1.0"]
    last = ""
    for n, (i, k, seconds) in enumerate(deck.states()):
        png = work / f"{tag}-{n:03d}.png"
        draw_slide(deck, i, k, size).save(png, compress_level=1)
        last = f"file '{png.resolve()}'"
        lines += [last, f"duration {seconds:.3f}"]
    lines.append(last)  # the demuxer ignores the last entry's duration unless the file is listed once more
    listing = work / f"{tag}.ffconcat"
    listing.write_text("\n".join(lines) + "\n")
    return ("-f", "concat", "-safe", "0", "-i", str(listing))


@dataclass(frozen=True)
class Lecture:
    """A screen recording of a slide deck with a drifting laser pointer."""

    deck: Deck
    size: Size
    fps: int
    frames: int

    def argv(self, out: Path, work: Path) -> list[str]:
        w, h = self.size
        g = E.FilterGraph()
        tag = out.stem
        slides = g.add(g.input(_slides_input(self.deck, self.size, work, tag)),
                       f"fps={self.fps},scale={w}:{h},setsar=1,format=yuv420p")
        pointer = work / f"{tag}-pointer.png"
        _pointer_png(pointer, self.size)
        x0, ax, tx, y0, ay, ty = self.deck.pointer
        dot = g.add(g.input(("-loop", "1", "-framerate", "1", "-i", str(pointer))), "format=rgba")
        label = g.add([slides, dot], f"overlay=x='{w}*({x0:.3f}+{ax:.3f}*sin(2*PI*t/{tx:.2f}))':"
                                     f"y='{h}*({y0:.3f}+{ay:.3f}*sin(2*PI*t/{ty:.2f}+1))':shortest=1,"
                                     f"format=yuv420p,{E.exact_frames(self.fps, self.frames)}")
        return [*g.argv(label), *E.encoder_args(18), "-r", str(self.fps), str(out)]


@dataclass(frozen=True)
class Document:
    """A long page scrolled slowly from the top at ``speed`` px/s (of the page at ``size``'s width)."""

    theme: Theme
    blocks: tuple[tuple[str, str | int], ...]  # ("h", heading) / ("p", paragraph) / ("fig", seed)
    size: Size
    fps: int
    frames: int
    speed: float

    def page(self) -> Image.Image:
        w, h = self.size
        height = h + int(math.ceil(self.speed * self.frames / self.fps)) + h // 4
        img = Image.new("RGB", (w, height), self.theme.background)
        d = ImageDraw.Draw(img)
        body_px = max(10, h // 26)
        font, head = _font(body_px), _font(int(body_px * 1.5))
        margin, y = int(w * 0.08), int(h * 0.08)
        chars = max(20, int((w - 2 * margin) / (body_px * 0.55)))
        for kind, value in self.blocks:
            if y > height:
                break
            if kind == "h":
                d.text((margin, y), str(value), font=head, fill=self.theme.accent)
                y += int(body_px * 2.4)
            elif kind == "p":
                words, line = str(value).split(), ""
                for word in words:
                    if len(line) + len(word) + 1 > chars:
                        d.text((margin, y), line, font=font, fill=self.theme.text)
                        y += int(body_px * 1.5)
                        line = word
                    else:
                        line = f"{line} {word}".strip()
                d.text((margin, y), line, font=font, fill=self.theme.text)
                y += int(body_px * 2.4)
            else:
                fig_h = int(h * 0.35)
                rng = np.random.default_rng(int(value))
                bars = rng.uniform(0.1, 1.0, size=int(rng.integers(4, 12)))
                x, bw = margin, (w - 2 * margin) // (2 * len(bars))
                d.rectangle((margin, y, w - margin, y + fig_h), outline=self.theme.text, width=1)
                for b in bars:
                    d.rectangle((x + bw // 2, y + fig_h - int(b * fig_h * 0.9), x + bw + bw // 2, y + fig_h),
                                fill=self.theme.accent)
                    x += 2 * bw
                y += fig_h + body_px * 2
        return img

    def argv(self, out: Path, work: Path) -> list[str]:
        w, h = self.size
        png = work / f"{out.stem}-page.png"
        page = self.page()
        page.save(png, compress_level=1)
        top = page.height - h
        graph = (f"fps={self.fps},crop={w}:{h}:0:'min({top},{self.speed:.3f}*t)',setsar=1,format=yuv420p,"
                 f"{E.exact_frames(self.fps, self.frames)}")
        return ["-loop", "1", "-framerate", "1", "-t", f"{self.frames / self.fps + 2:.3f}", "-i", str(png),
                "-vf", graph, *E.encoder_args(18), "-r", str(self.fps), str(out)]


def sample_document(rng: np.random.Generator, size: Size, fps: int, frames: int) -> Document:
    theme = Theme.sample(rng)
    speed = float(rng.uniform(6, 24))
    blocks: list[tuple[str, str | int]] = []
    # Enough text for the page: a block is at least ~3 lines.
    lines_needed = (size[1] + speed * frames / fps) / max(10, size[1] // 26) / 1.5
    lines = 0.0
    while lines < lines_needed + 10:
        r = rng.random()
        if r < 0.15:
            blocks.append(("h", f"{len(blocks) + 1}. {rng.choice(TITLES)}"))
            lines += 2
        elif r < 0.25:
            blocks.append(("fig", int(rng.integers(2**31))))
            lines += 12
        else:
            n = int(rng.integers(25, 90))
            blocks.append(("p", " ".join(_sentence(rng, 6, 14) + "." for _ in range(max(1, n // 10)))))
            lines += n / 8 + 2
    return Document(theme, tuple(blocks), size, fps, frames, speed)


@dataclass(frozen=True)
class Presenter:
    """Slides filling the frame, a webcam-like inset of ``photo`` (a PNG rendered beforehand) that barely moves."""

    deck: Deck
    photo: Path
    size: Size
    fps: int
    frames: int
    corner: int  # 0..3: top left, top right, bottom left, bottom right
    inset: float  # inset width / frame width
    breathe: tuple[float, float]  # zoom amplitude, period in seconds

    def argv(self, out: Path, work: Path) -> list[str]:
        w, h = self.size
        g = E.FilterGraph()
        slides = g.add(g.input(_slides_input(self.deck, self.size, work, out.stem)),
                       f"fps={self.fps},scale={w}:{h},setsar=1,format=yuv420p")
        iw = E.even(w * self.inset)
        ih = E.even(iw * 3 / 4)
        amp, period = self.breathe
        cam = g.add(g.image(self.photo),
                    f"zoompan=z='1.03+{amp:.4f}*sin(2*PI*on/({period:.2f}*{self.fps}))':x='(iw-iw/zoom)/2':"
                    f"y='(ih-ih/zoom)/3':d={self.frames + 3}:s={iw}x{ih}:fps={self.fps},setsar=1,"
                    f"pad={iw + 4}:{ih + 4}:2:2:color=white,format=yuv420p")
        margin = E.even(w * 0.02, 2)
        x = margin if self.corner in (0, 2) else w - iw - 4 - margin
        y = margin if self.corner in (0, 1) else h - ih - 4 - margin
        label = g.add([slides, cam], f"overlay={x}:{y}:shortest=1,format=yuv420p,"
                                     f"{E.exact_frames(self.fps, self.frames)}")
        return [*g.argv(label), *E.encoder_args(18), "-r", str(self.fps), str(out)]


@dataclass(frozen=True)
class Recording:
    """A rendered recording: ``spec`` (a :class:`Lecture`, :class:`Document` or :class:`Presenter`) made at
    ``out`` after rendering the stills it needs."""

    spec: Lecture | Document | Presenter
    stills: tuple[tuple[Path, object], ...] = ()  # (png, render callable taking (path, size)), drawn first

    def make(self, out: Path, work: Path | None = None) -> None:
        """Draw the stills and slides into ``work`` (default: ``out``'s folder), then make ``out``."""
        from generate import ffmpeg

        work = work or out.parent
        for png, render in self.stills:
            render(png, (960, 720))  # type: ignore[operator]
        ffmpeg(self.spec.argv(out, work))
