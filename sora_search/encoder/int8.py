"""The int8 CPU build of the EfficientNet-Lite0 trunk that the Sora encoder taps (``precision="int8"``).

Static post-training quantization with torch.ao FX graph mode (``prepare_fx`` / ``convert_fx``, the ``x86`` engine):
per-channel symmetric int8 weights, per-tensor uint8 activations from min/max calibration. The pooling and the
projection stay float32. Three details keep the vectors within cosine 0.99 of float32 (docs/tuning.md):

* ReLU6 is ReLU (fused into its convolution) whose output range is capped at [0, 6] after calibration, so
  saturation does the clipping and the 256 levels cover only what the network can pass on;
* TensorFlow "SAME" stride-2 padding (one pixel more on the right) is a symmetric-padding convolution on the input
  shifted by one row and column, then the first output row and column dropped: fbgemm's fast depthwise kernels
  need symmetric padding, and an explicit pad would run in float between two requantizations;
* the 5x5 depthwise weights use 7 bits: fbgemm sums pairs of uint8 x int8 products in int16, which overflows with
  8-bit weights and full-range activations.

Calibration is done once, offline, on photos (``benchmarks/speed/int8_calibrate.py``: scikit-image's sample photos,
none of the footage the vectors are checked on); the package ships the activation ranges it observed
(``int8_ranges.json``, a few KB), so a process quantizes without calibrating (well under a second) and every
process gets the same int8 network.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sora_search.encoder.efficientnet import Conv2dSame, EfficientNetLite0, MBConvBlock
from sora_search.errors import EncoderError

logger = logging.getLogger(__name__)

# Bumped whenever the recipe below changes the int8 vectors (the identity's version then changes with it).
RECIPE = "1"
ENGINE = "x86"
RANGES_FILE = "int8_ranges.json"
RELU6_MAX = 6.0


def _plain_conv(conv: Conv2dSame, size: int) -> tuple[nn.Conv2d, bool]:
    """A plain ``nn.Conv2d`` with symmetric padding, and whether its input must be shifted (see module docstring)."""
    k, s = conv.kernel_size[0], conv.stride[0]
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    before, after = total // 2, total - total // 2
    out = nn.Conv2d(conv.in_channels, conv.out_channels, k, stride=s, groups=conv.groups, bias=True,
                    padding=after)
    out.weight, out.bias = conv.weight, conv.bias
    if before == after:
        return out, False
    if after != before + 1 or s != 2:
        raise EncoderError(f"unexpected SAME padding {before}/{after} for a {k}x{k}/{s} convolution at {size} px")
    return out, True


def _run(conv: nn.Conv2d, act: nn.Module | None, shifted: bool, x: torch.Tensor) -> torch.Tensor:
    if not shifted:
        h = conv(x)
        return act(h) if act is not None else h
    # One zero row/column on top/left, symmetric padding, first output row/column dropped == TF SAME stride 2.
    h = conv(F.pad(x, (1, 0, 1, 0)))
    h = act(h) if act is not None else h
    return h[:, :, 1:, 1:]


class _QBlock(nn.Module):
    """An MBConv block with quantization-friendly modules (plain convolutions, ReLU modules)."""

    def __init__(self, block: MBConvBlock, size: int) -> None:
        super().__init__()
        self.has_expand = block.has_expand
        if self.has_expand:
            self.expand, _ = _plain_conv(block._expand_conv, size)
            self.act0 = nn.ReLU()
        self.dw, self.shifted = _plain_conv(block._depthwise_conv, size)
        self.act1 = nn.ReLU()
        self.project, _ = _plain_conv(block._project_conv, size // block._depthwise_conv.stride[0])
        self.residual = block.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act0(self.expand(x)) if self.has_expand else x
        h = self.project(_run(self.dw, self.act1, self.shifted, h))
        return h + x if self.residual else h


class _QTrunk(nn.Module):
    """Stem and blocks 0..max(taps) of a BatchNorm-folded backbone; returns the tapped maps."""

    def __init__(self, fused: EfficientNetLite0, taps: tuple[int, ...], size: int) -> None:
        super().__init__()
        self.stem, self.stem_shifted = _plain_conv(fused._conv_stem, size)
        self.act = nn.ReLU()
        side = size // 2
        blocks = []
        for block in list(fused._blocks)[:max(taps) + 1]:
            assert isinstance(block, MBConvBlock)
            blocks.append(_QBlock(block, side))
            side //= int(block._depthwise_conv.stride[0])
        self.blocks = nn.ModuleList(blocks)
        self.taps = tuple(taps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = _run(self.stem, self.act, self.stem_shifted, x)
        found = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                found[i] = x
        return tuple(found[i] for i in self.taps)


def _qconfig_mapping(trunk: _QTrunk) -> object:
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    # eps: a floor on each channel's weight scale, so that the int32 bias of a dead channel cannot overflow.
    weight8 = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, eps=1e-5)
    weight7 = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, eps=1e-5,
                                                 quant_min=-64, quant_max=63)
    act = MinMaxObserver.with_args(reduce_range=False)
    mapping = QConfigMapping().set_global(QConfig(activation=act, weight=weight8))
    for name, module in trunk.named_modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1 and module.kernel_size[0] == 5:
            mapping.set_module_name(name, QConfig(activation=act, weight=weight7))
    return mapping


def _cap_relu6(prepared: torch.fx.GraphModule) -> int:
    """Cap the observed range after every (conv+)ReLU at 6: it is a ReLU6. Returns how many were capped."""
    import torch.ao.nn.intrinsic as nni

    capped = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not isinstance(prepared.get_submodule(node.target), (nni.ConvReLU2d, nn.ReLU)):
            continue
        for user in node.users:
            obs = prepared.get_submodule(user.target) if user.op == "call_module" else None
            if obs is not None and isinstance(getattr(obs, "max_val", None), torch.Tensor):
                obs.max_val.clamp_(max=RELU6_MAX)  # type: ignore[operator]
                capped += 1
    return capped


def _pad_in_int8(model: torch.fx.GraphModule) -> None:
    """Pad the quantized tensor itself instead of dequantize -> pad -> quantize (zero padding is exact in int8)."""
    graph = model.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not F.pad:
            continue
        src, users = node.args[0], list(node.users)
        if (getattr(src, "op", None) == "call_method" and src.target == "dequantize" and len(users) == 1
                and users[0].target is torch.quantize_per_tensor):
            with graph.inserting_after(node):
                padded = graph.call_function(F.pad, (src.args[0],) + tuple(node.args[1:]), dict(node.kwargs))
            users[0].replace_all_uses_with(padded)
    graph.eliminate_dead_code()
    model.recompile()


def _prepare(fused: EfficientNetLite0, taps: tuple[int, ...], size: int) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import prepare_fx

    if ENGINE not in torch.backends.quantized.supported_engines:
        raise EncoderError(f"torch {torch.__version__} has no {ENGINE!r} quantized engine for the int8 encoder; "
                           "use precision 'fp32' (--precision fp32 or SORA_SEARCH_PRECISION=fp32)")
    torch.backends.quantized.engine = ENGINE
    trunk = _QTrunk(copy.deepcopy(fused), tuple(taps), size).eval()
    return prepare_fx(trunk, _qconfig_mapping(trunk), (torch.zeros(1, 3, size, size),))  # type: ignore[arg-type]


def _activation_observers(prepared: torch.fx.GraphModule) -> dict[str, nn.Module]:
    return {name: m for name, m in prepared.named_modules()
            if name.startswith("activation_post_process") and hasattr(m, "min_val")}


def calibrate(fused: EfficientNetLite0, frames: np.ndarray, taps: tuple[int, ...], size: int = 224
              ) -> dict[str, list[float]]:
    """Activation ranges of the int8 trunk observed on ``frames`` ((n, size, size, 3) uint8 RGB): the content of
    ``int8_ranges.json`` (made by ``benchmarks/speed/int8_calibrate.py``)."""
    prepared = _prepare(fused, taps, size)
    batch = torch.from_numpy(np.ascontiguousarray(frames))
    with torch.inference_mode():
        for start in range(0, len(batch), 16):
            prepared(EfficientNetLite0.preprocess(batch[start:start + 16]))
    return {name: [float(obs.min_val), float(obs.max_val)]  # type: ignore[arg-type]
            for name, obs in _activation_observers(prepared).items()}


def packaged_ranges() -> dict[str, object]:
    """The activation ranges shipped with the package: ``{"recipe", "taps", "size", "source", "ranges"}``."""
    path = Path(__file__).with_name(RANGES_FILE)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot read the int8 calibration {path}: {exc}; reinstall sora-search, or use "
                           "precision 'fp32' (--precision fp32)") from None


def quantize_trunk(fused: EfficientNetLite0, taps: tuple[int, ...], size: int = 224,
                   ranges: dict[str, list[float]] | None = None) -> torch.nn.Module:
    """The int8 trunk: (b, 3, size, size) preprocessed float32 (channels-last is fastest) -> tuple of tapped maps
    as quantized tensors (``.dequantize()`` gives float32).

    Args:
        fused: a BatchNorm-folded backbone (:meth:`EfficientNetLite0.fused`); not modified.
        taps: block indices whose outputs to return.
        ranges: activation ranges from :func:`calibrate`; default: those shipped (:func:`packaged_ranges`).

    Raises:
        EncoderError: this torch has no ``x86`` quantized engine, or the ranges do not fit this trunk.
    """
    started = time.perf_counter()
    if ranges is None:
        shipped = packaged_ranges()
        if (shipped.get("recipe"), shipped.get("taps"), shipped.get("size")) != (RECIPE, list(taps), size):
            raise EncoderError(f"the shipped int8 calibration is for recipe {shipped.get('recipe')}, taps "
                               f"{shipped.get('taps')} at {shipped.get('size')} px, not {RECIPE}, {list(taps)}, "
                               f"{size}; use precision 'fp32' (--precision fp32)")
        ranges = shipped["ranges"]  # type: ignore[assignment]
    assert ranges is not None
    with warnings.catch_warnings():
        # torch 2.13 warns that torch.ao quantization moves to torchao; the kernels used here still ship in torch.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.")
        warnings.filterwarnings("ignore", message=r".*(deprecated|torchao).*")
        return _quantize(fused, taps, size, ranges, started)


def _quantize(fused: EfficientNetLite0, taps: tuple[int, ...], size: int, ranges: dict[str, list[float]],
              started: float) -> torch.nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    prepared = _prepare(fused, taps, size)
    observers = _activation_observers(prepared)
    if set(observers) != set(ranges):
        raise EncoderError(f"the int8 calibration names {len(ranges)} activations, this trunk has {len(observers)}; "
                           "use precision 'fp32' (--precision fp32)")
    for name, obs in observers.items():
        low, high = ranges[name]
        obs.min_val, obs.max_val = torch.tensor(float(low)), torch.tensor(float(high))
    _cap_relu6(prepared)
    model = convert_fx(prepared)
    _pad_in_int8(model)
    logger.debug("quantized the EfficientNet-Lite0 trunk to int8 in %.1f s", time.perf_counter() - started)
    return model.eval()


@lru_cache(maxsize=2)
def cached_trunk(taps: tuple[int, ...], size: int = 224) -> torch.nn.Module:
    """:func:`quantize_trunk` of the packaged weights, once per process for each set of taps."""
    from sora_search.encoder.efficientnet import load_backbone

    return quantize_trunk(load_backbone().fused(), taps, size)
