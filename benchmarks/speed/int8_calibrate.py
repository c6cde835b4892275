"""Make ``sora_search/encoder/int8_ranges.json``: the activation ranges of the int8 trunk, observed on photos.

    python benchmarks/speed/int8_calibrate.py

The photos are scikit-image's bundled samples (``skimage.data``, installed with the test extra), each resized
whole and as four corner crops to 224 px: no network, and none of the footage the int8 vectors are checked on. The
ranges depend only on these photos, the packaged weights and the recipe in ``sora_search/encoder/int8.py``; run this
again (and bump ``INT8_RECIPE`` in ``sora_search/encoder/base.py``) when either changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The samples that scikit-image ships in its wheel (the others are downloaded on first use).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry", "hubble_deep_field", "camera",
          "brick", "grass", "gravel", "moon", "page", "coins", "cat", "colorwheel", "logo", "text", "clock")
OUT = Path(__file__).resolve().parents[2] / "sora_search" / "encoder" / "int8_ranges.json"


def photo_frames(size: int = 224) -> np.ndarray:
    """(n, size, size, 3) uint8: each photo whole and its four corner crops (60 %), resized."""
    from PIL import Image
    from skimage import data

    frames = []
    for name in PHOTOS:
        img = np.asarray(getattr(data, name)())
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-9))).astype(np.uint8)
        h, w = img.shape[:2]
        ch, cw = int(h * 0.6), int(w * 0.6)
        views = [img, img[:ch, :cw], img[:ch, w - cw:], img[h - ch:, :cw], img[h - ch:, w - cw:]]
        frames += [np.asarray(Image.fromarray(np.ascontiguousarray(v)).resize((size, size), Image.BILINEAR))
                   for v in views]
    return np.stack(frames)


def main() -> None:
    from sora_search.encoder.efficientnet import load_backbone
    from sora_search.encoder.int8 import RECIPE, calibrate
    from sora_search.encoder.sora import INPUT_SIZE, SORA_TAPS

    frames = photo_frames(INPUT_SIZE)
    ranges = calibrate(load_backbone().fused(), frames, SORA_TAPS, INPUT_SIZE)
    OUT.write_text(json.dumps({"recipe": RECIPE, "taps": list(SORA_TAPS), "size": INPUT_SIZE,
                               "source": f"skimage.data: {len(PHOTOS)} photos x 5 views = {len(frames)} frames",
                               "ranges": ranges}, indent=0) + "\n")
    print(f"wrote {OUT} ({len(ranges)} activation ranges from {len(frames)} frames)")


if __name__ == "__main__":
    main()
