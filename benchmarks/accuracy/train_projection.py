"""Train the contrastive projection that ships with sora-search (``sora_search/encoder/data``).

    python benchmarks/accuracy/train_projection.py BENCH [--split tune] [--library-minutes 20] [--int8-copies]
        [--out FILE]

The Sora encoder's raw 704-d descriptor comes from a backbone trained to name ImageNet classes, so two different
pages of text, or two colourful test patterns, look alike to it, while a blurred or cropped copy of one frame can
look less like its original than a neighbour does. This script learns the linear map after the backbone (the
projection to 256 dimensions, the design's "FC" layer) in the spirit of SSCD: frames and edited copies of them are
encoded with the frozen backbone, and an InfoNCE loss pulls each frame's edited copy to it and pushes every other
frame of the batch away (frames of one video within ``NEAR_S`` seconds are not counted as negatives: they are the
same picture). The map starts from PCA of the frames, so training only has to correct it.

The frames are those of one split's library as ``run.py --library-minutes`` builds it (references, then filler),
one per second. Edits are drawn per frame from the benchmark's families, applied with Pillow to a 448 px frame;
the held-out split is never read. Everything is seeded: the same inputs give the same matrix.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as R  # noqa: E402

logger = logging.getLogger("train_projection")
SIDE = 224
NEAR_S = 2.5
WORDS = ("breaking news", "LIVE", "subscribe", "wow", "2024", "HD", "viral", "#trending", "omg", "part 2", "epic")
LIGHT = ("reencode", "downscale", "crop", "hflip", "color", "blur", "noise", "text", "shapes", "pad")
KINDS = LIGHT + ("grayscale", "aspect", "pip", "stack", "blend", "combo", "combo")
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "sora_search" / "encoder" / "data" / "contrastive-sora-lite0.npz"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        return ImageFont.load_default()


class Editor:
    """Seeded frame edits in the benchmark's families (Pillow on a square RGB frame)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)

    def colour(self) -> tuple[int, int, int]:
        return (self.rng.randint(0, 255), self.rng.randint(0, 255), self.rng.randint(0, 255))

    def one(self, im: Image.Image, kind: str, other: Image.Image) -> Image.Image:
        rng, w = self.rng, im.size[0]
        if kind == "reencode":
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=rng.randint(5, 30))
            return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        if kind == "downscale":
            s = rng.randint(48, 160)
            return im.resize((s, s), Image.BILINEAR).resize((w, w), Image.BILINEAR)
        if kind == "crop":
            f = rng.uniform(0.55, 0.9)
            cw, ch = int(w * f), int(w * rng.uniform(f, min(1.0, f + 0.2)))
            x, y = rng.randint(0, w - cw), rng.randint(0, w - ch)
            return im.crop((x, y, x + cw, y + ch)).resize((w, w))
        if kind == "hflip":
            return im.transpose(Image.FLIP_LEFT_RIGHT)
        if kind == "color":
            a = np.asarray(im).astype(np.float32) * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40)
            a = a * np.array([rng.uniform(0.7, 1.3) for _ in range(3)], dtype=np.float32)
            grey = a.mean(axis=2, keepdims=True)
            return Image.fromarray(np.clip(grey + (a - grey) * rng.uniform(0.3, 1.8), 0, 255).astype(np.uint8))
        if kind == "grayscale":
            return im.convert("L").convert("RGB")
        if kind == "blur":
            return im.filter(ImageFilter.GaussianBlur(rng.uniform(2, 7)))
        if kind == "noise":
            a = np.asarray(im).astype(np.float32) + self.np_rng.normal(0, rng.uniform(8, 35), (w, w, 3))
            return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        if kind in ("text", "shapes"):
            im = im.copy()
            draw = ImageDraw.Draw(im)
            for _ in range(rng.randint(1, 3 if kind == "text" else 4)):
                if kind == "text":
                    size = int(w * rng.uniform(0.06, 0.14))
                    draw.text((rng.randint(0, w // 2), rng.randint(0, w - size)), rng.choice(WORDS),
                              font=_font(size), fill=self.colour())
                else:
                    s = int(w * rng.uniform(0.08, 0.25))
                    x, y = rng.randint(0, w - s), rng.randint(0, w - s)
                    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + s, y + s), fill=self.colour())
            return im
        if kind == "pad":
            s = int(w * rng.uniform(0.6, 0.9))
            canvas = Image.new("RGB", (w, w), self.colour() if rng.random() < 0.5 else (0, 0, 0))
            if rng.random() < 0.5:
                canvas.paste(im.resize((s, s)), ((w - s) // 2, (w - s) // 2))
            else:
                canvas.paste(im.resize((w, s)), (0, (w - s) // 2))
            return canvas
        if kind == "aspect":
            f = rng.uniform(0.6, 0.85)
            if rng.random() < 0.5:
                return im.crop((int(w * (1 - f) / 2), 0, int(w * (1 + f) / 2), w)).resize((w, w))
            return im.resize((w, int(w * f))).resize((w, w))
        if kind == "pip":
            canvas, s = other.copy(), int(w * rng.uniform(0.4, 0.6))
            canvas.paste(im.resize((s, s)), (rng.randint(0, w - s), rng.randint(0, w - s)))
            return canvas
        if kind == "stack":
            canvas, left = Image.new("RGB", (w, w)), rng.random() < 0.5
            canvas.paste(im.resize((w // 2, w)), (0 if left else w // 2, 0))
            canvas.paste(other.resize((w // 2, w)), (w // 2 if left else 0, 0))
            return canvas
        if kind == "blend":
            return Image.blend(im, other, rng.uniform(0.25, 0.45))
        raise ValueError(f"unknown edit {kind!r}")

    def edit(self, im: Image.Image, other: Image.Image) -> Image.Image:
        kind = self.rng.choice(KINDS)
        if kind != "combo":
            return self.one(im, kind, other)
        for k in self.rng.sample(LIGHT, self.rng.randint(2, 3)):
            im = self.one(im, k, other)
        return im


def library_frames(paths: list[Path]) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    """One frame per second of every file at 2x the encoder's side: (frames, video index (n,), seconds (n,))."""
    from sora_search.decode import DecodeWorker

    frames, video, seconds = [], [], []
    with DecodeWorker(timeout_s=120) as worker:
        for i, path in enumerate(paths):
            with worker.open(path, fps=1.0, size=2 * SIDE) as decoded:
                for batch in decoded:
                    frames += [Image.fromarray(f) for f in batch.frames]
                    video += [i] * len(batch.frames)
                    seconds += list(batch.timestamps_s)
    return frames, np.array(video), np.array(seconds)


@functools.cache
def _encoder(precision: str = "fp32"):  # loaded once for the frames and every round of edited copies
    from sora_search.encoder import load_encoder

    return load_encoder("sora-lite0", device="cpu", precision=precision)


def encode(images: list[Image.Image], precision: str = "fp32") -> np.ndarray:
    """(n, 704) float32 raw Sora descriptors of ``images`` resized to the encoder's side."""
    return _encoder(precision).embed(np.stack([np.asarray(im.resize((SIDE, SIDE), Image.BILINEAR))
                                               for im in images]))


def train(x0: np.ndarray, edited: np.ndarray, video: np.ndarray, seconds: np.ndarray, *, dim: int = 256,
          tau: float = 0.05, steps: int = 600, batch: int = 512, lr: float = 1e-3, seed: int = 0):
    """The contrastive map: InfoNCE between each frame and one of its edited copies, from PCA of ``x0``.

    Args:
        x0: (n, d) raw descriptors of the frames; edited: (r, n, d) of r edited copies of each.
        video, seconds: (n,) which video each frame is from and when (near frames are not negatives).

    Returns:
        sora_search.encoder.Projection named ``contrastive-<dim>``, mean = the frames' mean.
    """
    import torch

    from sora_search.encoder import Projection

    torch.manual_seed(seed)
    pca = Projection.fit(x0, dim, min_vectors=2)
    assert pca.mean is not None and pca.matrix is not None
    mean = torch.tensor(pca.mean)
    matrix = torch.nn.Parameter(torch.tensor(pca.matrix).clone())
    a_all, b_all = torch.tensor(x0) - mean, torch.tensor(edited) - mean
    vid, sec = torch.tensor(video), torch.tensor(seconds)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([matrix], lr=lr)
    n = len(x0)
    for step in range(steps):
        rows = torch.randperm(n, generator=gen)[:batch]
        copy = torch.randint(0, edited.shape[0], (len(rows),), generator=gen)
        a = torch.nn.functional.normalize(a_all[rows] @ matrix, dim=1)
        b = torch.nn.functional.normalize(b_all[copy, rows] @ matrix, dim=1)
        eye = torch.eye(len(rows), dtype=torch.bool)
        near = (vid[rows][:, None] == vid[rows][None, :]) & ((sec[rows][:, None] - sec[rows][None, :]).abs() <= NEAR_S)
        target = torch.arange(len(rows))
        loss = sum(torch.nn.functional.cross_entropy((p @ q.T / tau).masked_fill(near & ~eye, -1e4), target)
                   for p, q in ((a, b), (b, a))) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            logger.info("step %d loss %.3f", step, loss.item())
    return Projection(f"contrastive-{dim}", x0.shape[1], dim, n, pca.mean,
                      matrix.detach().numpy().astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="folder made by generate.py --splits")
    ap.add_argument("--split", default="tune", choices=["tune"], help="the split whose library it learns from")
    ap.add_argument("--library-minutes", type=float, default=20.0)
    ap.add_argument("--edits", type=int, default=2, help="edited copies per frame")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--int8-copies", action="store_true",
                    help="also count each frame and each edited copy through the int8 encoder as copies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    truth = json.loads((args.bench / "truth.json").read_text())
    (size,) = R.library_sizes(truth, args.split, [args.library_minutes])
    paths = size.paths(args.bench)
    t0 = time.perf_counter()
    frames, video, seconds = library_frames(paths)
    logger.info("%d frames of %d videos decoded (%.0f s)", len(frames), len(paths), time.perf_counter() - t0)
    editor = Editor(args.seed)
    x0 = encode(frames)
    rounds = [[editor.edit(im, frames[editor.rng.randrange(len(frames))]) for im in frames]
              for _ in range(args.edits)]
    copies = [encode(images) for images in rounds]
    if args.int8_copies:  # the int8 encoder's error is one more edit the map must not magnify
        copies += [encode(frames, "int8")] + [encode(images, "int8") for images in rounds]
    edited = np.stack(copies)
    logger.info("encoded (%.0f s)", time.perf_counter() - t0)
    projection = train(x0, edited, video, seconds, steps=args.steps, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(projection.to_bytes())
    logger.info("wrote %s (%s, fitted on %d frames, %.0f s)", args.out, projection.name, len(frames),
                time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
