"""Can the descriptor tell a slide's edited copy from another slide of the same deck, and does a finer read help?

    python benchmarks/accuracy/slide_text.py [--decks 10] [--slides 6] [--sides 224 320] [--projection centre]
                                             [--cells TAP] [--ocr] [--photos DIR] [--out FILE]

Slides are drawn by ``render.py`` (a deck's one layout, each slide's own title and bullets, every bullet shown), so a
pair of slides of one deck differs only in its text, as the benchmark's same-scene negatives of rendered lectures
do. Each slide is also edited as the benchmark edits copies (re-encoded, captioned, shrunk, blurred, cropped;
approximated here on single pictures with Pillow), then every picture is squashed to SIDE x SIDE as the decoder
squashes frames and described by ``sora-lite0``'s weights read at that side. Per edit, the copies' similarity to
their own slide is set against the negatives' (every other slide of the same deck against it): the AUC is how often
a copy scores above a negative (1: always), and "first" how often the copy's nearest slide of its deck is its own.

``--projection``: ``centre`` (the descriptors centred on the mean of the slides and ``--photos``, as a library centres
its own) or ``map`` (the shipped contrastive map, trained at 224 px). ``--cells TAP`` compares the backbone block TAP's
feature maps instead, cell by cell: each cell of the slide takes its best cosine with the copy's cells one cell around
it, and the pair scores the 30th percentile over cells (a caption spoils a few cells, another slide's text more).
``--ocr`` reads the words instead, with the ``tesseract`` command (Debian's ``tesseract-ocr``; not a dependency of the
engine), from the pictures at their own size: a pair scores the Jaccard index of its two sets of words of three letters
or more read with a confidence of 80 or more. A measurement of the descriptor, not of the engine: see docs/tuning.md
("The encoder's input side"). """

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

import edits as E
import render as R
from sora_search.encoder import load_encoder
from sora_search.encoder.projection import Projection
from sora_search.params import TextParams
from sora_search.query.text import words_of_tsv

SIZE = (1280, 720)
CELL_QUANTILE = 0.3
# A word counts when tesseract is this sure of it (0-100), as in the engine's check: on a heavily re-encoded frame it
# also "reads" strings of letters in the blocking at 0-55, where the words it does read score 90 and more.
MIN_CONFIDENCE = TextParams().min_confidence
Picture = Image.Image


def _jpeg(img: Picture, quality: int) -> Picture:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _shrink(img: Picture, f: float) -> Picture:
    return img.resize((max(2, int(img.width * f)), max(2, int(img.height * f))), Image.Resampling.BICUBIC)


def _caption(img: Picture, rng: np.random.Generator, work: Path) -> Picture:
    """``edits.overlay_text``'s caption: 1-3 lines of 6-14% of the height at a random place."""
    lines = [" ".join(str(w) for w in rng.choice(E.WORDS, size=int(rng.integers(1, 4)), replace=False))
             for _ in range(int(rng.integers(1, 4)))]
    height = float(rng.uniform(0.06, 0.14))
    png = work / "caption.png"
    E.render_text_png(png, img.size, lines, font_px=max(10, int(img.height * height)), fill=(255, 255, 80),
                      position=(float(rng.random()), float(rng.random())), stroke=max(1, int(img.height * height / 12)),
                      box=None)
    out = img.convert("RGBA")
    out.alpha_composite(Image.open(png))
    return out.convert("RGB")


def _crop(img: Picture, keep: float) -> Picture:
    dw, dh = int(img.width * (1 - keep) / 2), int(img.height * (1 - keep) / 2)
    return img.crop((dw, dh, img.width - dw, img.height - dh))


Edit = Callable[[Picture, np.random.Generator, Path], Picture]
EDITS: dict[str, Edit] = {
    "jpeg q30": lambda im, rng, w: _jpeg(im, 30),
    "jpeg q8": lambda im, rng, w: _jpeg(im, 8),
    "caption": lambda im, rng, w: _jpeg(_caption(im, rng, w), 40),
    "shrunk to 0.47": lambda im, rng, w: _jpeg(_shrink(im, 0.47), 40),
    "shrunk to 0.25": lambda im, rng, w: _jpeg(_shrink(im, 0.25), 40),
    "blur": lambda im, rng, w: _jpeg(im.filter(ImageFilter.GaussianBlur(4)), 40),
    "crop to 0.85": lambda im, rng, w: _jpeg(_crop(im, 0.85), 40),
    "caption, 0.47": lambda im, rng, w: _jpeg(_shrink(_caption(im, rng, w), 0.47), 40),
}


def squash(pictures: list[Picture], side: int) -> np.ndarray:
    """(n, side, side, 3) uint8, each picture resized to a square as the decoder resizes frames."""
    return np.stack([np.asarray(p.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)) for p in pictures])


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """How often a positive scores above a negative (ties count half)."""
    p, n = positives[:, None], negatives[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


class Reader:
    """``sora-lite0`` read at one input side: its descriptor (projected) or one block's feature maps."""

    def __init__(self, side: int, projection: str, cells: int | None, background: list[Picture]) -> None:
        self.encoder = load_encoder("sora-lite0", device="cpu")
        # The same weights at another side: the backbone is convolutional and the pooling takes any map size.
        self.encoder.identity = dataclasses.replace(self.encoder.identity, input_size=side)
        self.side, self.projection, self.cells = side, projection, cells
        self.label = f"side {side}, " + (f"cells of block {cells}" if cells is not None else projection)
        self.background = self.encoder.embed(squash(background, side)) if background else None
        self.fitted: Projection | None = None

    def fit_read(self, slides: list[Picture]) -> np.ndarray:
        """:meth:`read` of the slides, the projection first fitted on their descriptors and the background's (what
        a library of both would fit)."""
        if self.cells is not None:
            return self.read(slides)
        own = self.encoder.embed(squash(slides, self.side))
        library = own if self.background is None else np.concatenate([self.background, own])
        if self.projection == "map":
            self.fitted = Projection.contrastive("sora-lite0", 256, library)
            if self.fitted is None:
                sys.exit("no contrastive map ships for sora-lite0 at 256-d")
        else:
            self.fitted = Projection("centre", library.shape[1], library.shape[1], len(library),
                                     library.mean(axis=0).astype(np.float32), None)
        return self.fitted.apply(own)

    def read(self, pictures: list[Picture]) -> np.ndarray:
        """(n, d) projected descriptors, or (n, C, h, w) L2-normalised feature-map cells with ``cells``."""
        frames = squash(pictures, self.side)
        if self.cells is None:
            assert self.fitted is not None
            return self.fitted.apply(self.encoder.embed(frames))
        import torch

        from sora_search.encoder.efficientnet import EfficientNetLite0

        backbone = getattr(self.encoder, "backbone")  # sora-lite0's EfficientNetLite0, BatchNorm folded
        with torch.inference_mode():
            maps = [backbone.features(EfficientNetLite0.preprocess(torch.from_numpy(frames[i:i + 8])), (self.cells,))[0]
                    for i in range(0, len(frames), 8)]
        return torch.nn.functional.normalize(torch.cat(maps), dim=1).numpy()

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(n,) similarity of each row pair: the cosine, or with ``cells`` the cell statistic."""
        if self.cells is None:
            return np.einsum("ij,ij->i", a, b)
        best = np.full((a.shape[0], a.shape[2], a.shape[3]), -1.0, dtype=np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                best = np.maximum(best, np.einsum("nchw,nchw->nhw", a, np.roll(b, (dy, dx), axis=(2, 3))))
        return np.quantile(best.reshape(len(a), -1), CELL_QUANTILE, axis=1)


def read_words(png: Path, min_confidence: float = MIN_CONFIDENCE) -> frozenset[str]:
    """The words ``tesseract`` reads in ``png``, as the engine's text check counts them."""
    tsv = subprocess.run(["tesseract", str(png), "-", "--psm", "3", "tsv"], capture_output=True, text=True,
                         check=True).stdout
    return words_of_tsv(tsv, min_confidence)


class TextReader:
    """The words ``tesseract`` reads in each picture, at the picture's own size."""

    label = "words read by tesseract"
    side = 0

    def __init__(self, work: Path) -> None:
        if shutil.which("tesseract") is None:
            sys.exit("--ocr needs the tesseract command on PATH (Debian: apt-get install tesseract-ocr)")
        self.png = work / "ocr.png"

    def fit_read(self, slides: list[Picture]) -> np.ndarray:
        """:meth:`read` of the slides (nothing to fit)."""
        return self.read(slides)

    def read(self, pictures: list[Picture]) -> np.ndarray:
        """(n,) object array of frozensets: each picture's lower-case words of three letters or more."""
        out = np.empty(len(pictures), dtype=object)
        for i, picture in enumerate(pictures):
            picture.save(self.png)
            out[i] = read_words(self.png)
        return out

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(n,) the Jaccard index of each pair's word sets (0 where neither has a word)."""
        return np.array([len(x & y) / max(1, len(x | y)) for x, y in zip(a, b)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decks", type=int, default=10)
    ap.add_argument("--slides", type=int, default=6, help="slides of each deck (at most)")
    ap.add_argument("--sides", type=int, nargs="+", default=[224, 320], help="encoder input sides to compare")
    ap.add_argument("--projection", choices=("centre", "map"), default="centre")
    ap.add_argument("--cells", type=int, default=None, metavar="TAP",
                    help="compare block TAP's feature-map cells (0-15) instead of descriptors")
    ap.add_argument("--ocr", action="store_true", help="compare the words tesseract reads instead (--sides, "
                                                        "--projection and --cells do not apply)")
    ap.add_argument("--photos", type=Path, default=None, help="pictures the library holds beside the slides "
                                                              "(MEDIA/photos), for the centring")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/results/slide_text"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.decks < 1 or args.slides < 2:
        sys.exit("--decks must be >= 1 and --slides >= 2: a negative is another slide of the same deck")
    args.work.mkdir(parents=True, exist_ok=True)

    decks = [R.sample_deck(np.random.default_rng(100 + d), 60) for d in range(args.decks)]
    slides = [(d, i, R.draw_slide(deck, i, len(deck.slides[i].bullets), SIZE))
              for d, deck in enumerate(decks) for i in range(min(args.slides, len(deck.slides)))]
    pictures = [p for _, _, p in slides]
    copies = {name: [edit(p, np.random.default_rng(1000 * d + i), args.work) for d, i, p in slides]
              for name, edit in EDITS.items()}
    deck = np.array([d for d, _, _ in slides])
    a, b = np.nonzero((deck[:, None] == deck[None, :]) & ~np.eye(len(slides), dtype=bool))  # other slide, same deck
    background = []
    if args.photos is not None:
        files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:150]
        background = [Image.open(p).convert("RGB") for p in files]

    rows = []
    readers = [TextReader(args.work)] if args.ocr else \
        (Reader(side, args.projection, args.cells, background) for side in args.sides)
    for reader in readers:
        own = reader.fit_read(pictures)
        negatives = reader.similarity(own[a], own[b])
        side, how = reader.side, reader.label
        print(f"{how}: {len(negatives)} negatives, mean {negatives.mean():.3f}, "
              f"90th percentile {np.quantile(negatives, 0.9):.3f}")
        positives = []
        for name, edited in copies.items():
            seen = reader.read(edited)
            pos = reader.similarity(own, seen)
            # first: the copy's nearest slide of its own deck is its own slide
            first = np.mean([pos[k] > reader.similarity(own[(deck == deck[k]) & (np.arange(len(own)) != k)],
                                                        np.repeat(seen[k:k + 1], (deck == deck[k]).sum() - 1,
                                                                  axis=0)).max() for k in range(len(own))])
            positives.append(pos)
            rows.append({"side": side, "how": how, "edit": name, "copy_mean": round(float(pos.mean()), 3),
                         "auc": round(auc(pos, negatives), 3), "first": round(float(first), 3)})
            print(f"  {name:<15} copies mean {pos.mean():.3f}  AUC {rows[-1]['auc']:.3f}  first {first:.2f}")
        every = auc(np.concatenate(positives), negatives)
        rows.append({"side": side, "how": how, "edit": "all", "auc": round(every, 3)})
        print(f"  every edit      AUC {every:.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
