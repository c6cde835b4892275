"""The Sora pooling encoder ("sora-lite0") and its global-average-pool ablation ("sora-lite0-gap").

Imported lazily by :func:`sora_search.encoder.load_encoder` because it imports torch.

sora-lite0 descriptor, per frame: EfficientNet-Lite0 at 224 px; the outputs of blocks 7 (80 ch, 14x14),
10 (112 ch, 14x14), 14 (192 ch, 7x7) and 15 (320 ch, 7x7); each map pooled with R-MAC-style multi-scale
regional max pooling (the whole map, a 2x2 grid and a 3x3 grid of overlapping regions; every region vector
L2-normalised, then summed); each stage's vector L2-normalised; the four concatenated (704-d) and L2-normalised
by the base class. Mid-level stages (14x14) keep texture and layout that survive crops and re-encodes; the last
stages add semantics. Stopping at block 15 skips the 1280-ch head, so the cost is a little under one
classification forward pass.
"""

from __future__ import annotations

import logging

import torch

from sora_search.encoder.base import Encoder, EncoderIdentity
from sora_search.encoder.efficientnet import BLOCK_CHANNELS, HEAD_CHANNELS, EfficientNetLite0

logger = logging.getLogger(__name__)

INPUT_SIZE = 224
SORA_TAPS: tuple[int, ...] = (7, 10, 14, 15)
SORA_SCALES: tuple[int, ...] = (1, 2, 3)
_EPS = 1e-6


def region_grid(height: int, width: int, scales: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """R-MAC-style square-ish regions: at scale l, an l x l grid of regions of side ~2/(l+1) of the map.

    Neighbouring regions overlap (about 40-50 %), as in Tolias et al.'s R-MAC, so an object cut by a crop
    still falls wholly inside some region. Scale 1 is the whole map.

    Returns:
        (y0, y1, x0, x1) slices, deduplicated, in a fixed order.
    """
    regions: list[tuple[int, int, int, int]] = []
    for level in scales:
        if level == 1:
            hs, ws = height, width
        else:
            hs = max(1, round(2 * height / (level + 1)))
            ws = max(1, round(2 * width / (level + 1)))
        ys = [round(i * (height - hs) / (level - 1)) for i in range(level)] if level > 1 else [0]
        xs = [round(i * (width - ws) / (level - 1)) for i in range(level)] if level > 1 else [0]
        for y in ys:
            for x in xs:
                r = (y, y + hs, x, x + ws)
                if r not in regions:
                    regions.append(r)
    return regions


def rmac(feature_map: torch.Tensor, scales: tuple[int, ...] = SORA_SCALES,
         regions: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Multi-scale regional max pooling.

    Args:
        feature_map: (b, C, h, w) float.
        scales: grid levels, see :func:`region_grid`.
        regions: when given, each region's L2-normalised maxima (b, C) are appended to it, in
            :func:`region_grid`'s order.

    Returns:
        (b, C) float32, L2-normalised: the sum of the L2-normalised region maxima.
    """
    fmap = feature_map.float()  # fp16 from autocast would overflow the squared norms
    total = torch.zeros(fmap.shape[:2], dtype=fmap.dtype, device=fmap.device)
    columns: dict[tuple[int, int], torch.Tensor] = {}  # each column range's maxima per row, shared by its regions
    for y0, y1, x0, x1 in region_grid(fmap.shape[2], fmap.shape[3], scales):
        if (x0, x1) not in columns:
            columns[x0, x1] = fmap[:, :, :, x0:x1].amax(dim=3)
        v = columns[x0, x1][:, :, y0:y1].amax(dim=2)
        v = v / v.norm(dim=1, keepdim=True).clamp_min(_EPS)
        total += v
        if regions is not None:
            regions.append(v)
    return total / total.norm(dim=1, keepdim=True).clamp_min(_EPS)


class _Lite0Encoder(Encoder):
    """Holds the backbone, moved to the encoder's device."""

    def __init__(self, identity: EncoderIdentity, backbone: EfficientNetLite0, *, device: str, batch_size: int) -> None:
        super().__init__(identity, device=device, batch_size=batch_size)
        self.backbone = backbone.fused().to(device).eval()  # BatchNorm folded into the convolutions


QUADRANTS = slice(1, 5)  # the 2x2 grid among region_grid's regions (the whole map comes first)


class SoraLite0Encoder(_Lite0Encoder):
    """The Sora pooling encoder: multi-scale regional max pooling of four backbone stages, 704-d.

    Its region vectors (:meth:`embed_regions`) are the 2x2 grid's four regions (top left, top right, bottom left,
    bottom right), each stage's maxima L2-normalised and the four stages concatenated: the same maxima the descriptor
    sums, kept apart, so an overlay that spoils one quadrant leaves the others to compare.

    ``precision="int8"`` runs the trunk quantized on the CPU (:mod:`sora_search.encoder.int8`), ``"bf16"`` under
    bfloat16 autocast (fast where the CPU has bf16 instructions: AMX, AVX512-BF16); the pooling stays float32.
    """

    region_count = 4

    def __init__(self, backbone: EfficientNetLite0, *, device: str = "cpu", batch_size: int = 32,
                 taps: tuple[int, ...] = SORA_TAPS, scales: tuple[int, ...] = SORA_SCALES,
                 precision: str = "fp32") -> None:
        identity = EncoderIdentity("sora-lite0", "1", sum(BLOCK_CHANNELS[t] for t in taps), INPUT_SIZE, precision)
        super().__init__(identity, backbone, device=device, batch_size=batch_size)
        self.taps = tuple(taps)
        self.scales = tuple(scales)
        self._int8: torch.nn.Module | None = None
        if precision == "int8":
            from sora_search.encoder.int8 import cached_trunk

            self._int8 = cached_trunk(self.taps, INPUT_SIZE)

    def _rows_to_run(self, n: int, device_type: str) -> int:
        # fbgemm (int8) generates its kernels for each new input shape, in seconds: a short batch (a file's last)
        # runs at the usual size so that the kernels of the first batch serve every later one.
        if self._int8 is not None:
            return max(n, self.batch_size)
        return super()._rows_to_run(n, device_type)

    def _maps(self, batch_uint8_nhwc: torch.Tensor) -> list[torch.Tensor]:
        x = EfficientNetLite0.preprocess(batch_uint8_nhwc)
        if self._int8 is not None:
            return [m.dequantize() for m in self._int8(x.contiguous(memory_format=torch.channels_last))]
        if self.identity.precision == "bf16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return list(self.backbone.features(x, self.taps))
        return list(self.backbone.features(x, self.taps))

    def _embed_batch(self, batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        return torch.cat([rmac(m, self.scales) for m in self._maps(batch_uint8_nhwc)], dim=1)

    def _embed_batch_regions(self, batch_uint8_nhwc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stages, quadrants = [], []
        for m in self._maps(batch_uint8_nhwc):
            regions: list[torch.Tensor] = []
            stages.append(rmac(m, self.scales, regions))
            quadrants.append(torch.stack(regions[QUADRANTS], dim=1))
        return torch.cat(stages, dim=1), torch.cat(quadrants, dim=2)


class SoraLite0GapEncoder(_Lite0Encoder):
    """Ablation: global average pool of the 1280-ch head activations."""

    def __init__(self, backbone: EfficientNetLite0, *, device: str = "cpu", batch_size: int = 32) -> None:
        identity = EncoderIdentity("sora-lite0-gap", "1", HEAD_CHANNELS, INPUT_SIZE)
        super().__init__(identity, backbone, device=device, batch_size=batch_size)

    def _embed_batch(self, batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        x = EfficientNetLite0.preprocess(batch_uint8_nhwc)
        (head,) = self.backbone.features(x, head=True)
        return head.float().mean(dim=(2, 3))
