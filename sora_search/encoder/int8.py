"""The int8 CPU build of the EfficientNet-Lite0 trunk that the Sora encoder taps (``precision="int8"``).

Static post-training quantization with torch.ao FX graph mode (``prepare_fx`` / ``convert_fx``, the ``x86`` engine):
per-channel symmetric int8 weights, per-tensor uint8 activations. The pooling and the projection stay float32. What
keeps the vectors within cosine 0.99 of float32 (docs/tuning.md):

* ReLU6 is ReLU (fused into its convolution) whose range is at most [0, 6]: calibration clips at 6 as it observes,
  so every later layer is calibrated on what the float network passes on, and saturation does the clipping;
* activation ranges from a histogram search (the range that minimises the quantization error), not min/max;
* TensorFlow "SAME" stride-2 padding (one pixel more on the right) is a symmetric-padding convolution on the input
  shifted by one row and column, then the first output row and column dropped: fbgemm's fast depthwise kernels
  need symmetric padding. The padding and the dropped row run on the int8 tensor at its own scale;
* weights use a narrow range (the largest weight of a channel is exactly +-127, not clipped from 127.5, which costs
  the high-gain channels of the first block), 7 bits in depthwise convolutions (fbgemm's depthwise kernels sum
  pairs of uint8 x int8 products in int16, which overflows with 8-bit weights and full-range activations), and are
  rounded so that each output channel's weights sum to its float sum rounded: flat regions, the whole of a
  low-contrast frame, then pass through every layer at their float gain.

Calibration is done once, offline, on photos (``benchmarks/speed/int8_calibrate.py``: scikit-image's sample photos,
none of the footage the vectors are checked on); the package ships the activation ranges it found
(``int8_ranges.json``, a few KB), so a process quantizes without calibrating (well under a second) and every
process gets the same int8 network.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import operator
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sora_search.encoder.base import INT8_RECIPE as RECIPE
from sora_search.encoder.efficientnet import Conv2dSame, EfficientNetLite0, MBConvBlock
from sora_search.errors import EncoderError

logger = logging.getLogger(__name__)

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


def _weight_limit(conv: nn.Conv2d) -> int:
    """The largest integer weight, narrow range: 63 (7 bits) in depthwise convolutions, 127 in the others."""
    return 63 if conv.groups > 1 else 127


def _qconfig_mapping(trunk: _QTrunk, calibrating: bool = False) -> object:
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver

    # Calibration searches each range on a histogram; quantizing sets the ranges found on min/max observers.
    act = HistogramObserver.with_args(reduce_range=False) if calibrating else MinMaxObserver.with_args()
    # eps: a floor on each channel's weight scale, so that the int32 bias of a dead channel cannot overflow.
    weights = {top: PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                       eps=1e-5, quant_min=-top, quant_max=top) for top in (63, 127)}
    mapping = QConfigMapping().set_global(QConfig(activation=act, weight=weights[127]))
    for name, module in trunk.named_modules():
        if isinstance(module, nn.Conv2d) and _weight_limit(module) != 127:
            mapping.set_module_name(name, QConfig(activation=act, weight=weights[_weight_limit(module)]))
    return mapping


def _relu_observers(prepared: torch.fx.GraphModule) -> list[nn.Module]:
    """The observers of every (conv+)ReLU's output, directly or through padding and slicing: those of a ReLU6."""
    import torch.ao.nn.intrinsic as nni

    found = []
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not isinstance(prepared.get_submodule(node.target), (nni.ConvReLU2d, nn.ReLU)):
            continue
        users = list(node.users)
        while users:
            user = users.pop()
            if user.op == "call_module":
                found.append(prepared.get_submodule(user.target))
            elif user.op == "call_function" and user.target in (F.pad, operator.getitem):
                users += list(user.users)
    return found


def _input_observer(prepared: torch.fx.GraphModule) -> str | None:
    """The name of the observer of the trunk's input (after the stem's padding); None when the stem is float."""
    observers = _activation_observers(prepared)
    for node in prepared.graph.nodes:
        src = node.args[0] if node.op == "call_module" and node.target in observers and node.args else None
        if getattr(src, "target", None) is F.pad:
            src = src.args[0]  # type: ignore[union-attr]
        if getattr(src, "op", None) == "placeholder":
            return str(node.target)
    return None


class _Clip6:
    """An observer's forward that clips at 6 before observing and passing on: the ReLU6, during calibration."""

    def __init__(self, observer: nn.Module) -> None:
        self.observe = observer.forward

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.observe(x.clamp(max=RELU6_MAX))  # type: ignore[no-any-return]


def _round_keeping_sums(v: torch.Tensor, top: int) -> torch.Tensor:
    """Round each row of ``v`` to integers in [-top, top] whose sum is the row's sum rounded: plain rounding,
    then the fewest elements moved one step, those nearest to rounding the other way."""
    r = torch.round(v)
    residual = v - r
    need = torch.round(v.sum(1) - r.sum(1))[:, None]
    up = _ranks(torch.argsort(residual, dim=1, descending=True)) < need
    down = _ranks(torch.argsort(residual, dim=1)) < -need
    return (r + up.to(r.dtype) - down.to(r.dtype)).clamp(-top, top)


def _ranks(order: torch.Tensor) -> torch.Tensor:
    """Each element's position in its row's ``order`` (the inverse permutation of every row)."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _requantize_weights(model: torch.fx.GraphModule, trunk: _QTrunk) -> None:
    """Replace each quantized convolution's rounded weights by :func:`_round_keeping_sums` of the float ones, at
    the same per-channel scales."""
    floats = {name: m for name, m in trunk.named_modules() if isinstance(m, nn.Conv2d)}
    for name, module in model.named_modules():
        if name not in floats or not hasattr(module, "set_weight_bias"):
            continue
        qweight = module.weight()
        scales = qweight.q_per_channel_scales()
        weight = floats[name].weight.detach().float()
        ints = _round_keeping_sums((weight / scales.view(-1, 1, 1, 1)).flatten(1), _weight_limit(floats[name]))
        module.set_weight_bias(torch._make_per_channel_quantized_tensor(
            ints.view_as(weight).to(torch.int8), scales, qweight.q_per_channel_zero_points(), 0), module.bias())


def _pad_int8(q: torch.Tensor, pad: tuple[int, ...], mode: str = "constant", value: float | None = None
              ) -> torch.Tensor:
    """``F.pad`` with zeros of a per-tensor quantized tensor, done on its integers (``F.pad`` on the quantized tensor
    itself takes a generic path several times slower than the convolution it feeds)."""
    if mode != "constant" or value:
        raise EncoderError(f"the int8 trunk pads with zeros only, not {mode} {value}")
    padded = F.pad(q.int_repr(), pad, value=q.q_zero_point())
    return torch._make_per_tensor_quantized_tensor(padded, q.q_scale(), q.q_zero_point())


def _shape_ops_in_int8(model: torch.fx.GraphModule) -> None:
    """Pad and slice the quantized tensor itself, at its own scale, instead of dequantize -> op -> quantize (zero
    padding and dropping rows are exact in int8)."""
    graph = model.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (F.pad, operator.getitem):
            continue
        src, users = node.args[0], list(node.users)
        if (getattr(src, "op", None) == "call_method" and src.target == "dequantize" and len(users) == 1
                and users[0].target is torch.quantize_per_tensor):
            op = _pad_int8 if node.target is F.pad else node.target
            with graph.inserting_after(node):
                moved = graph.call_function(op, (src.args[0],) + tuple(node.args[1:]), dict(node.kwargs))
            users[0].replace_all_uses_with(moved)
    graph.eliminate_dead_code()
    model.recompile()


def _prepare(fused: EfficientNetLite0, taps: tuple[int, ...], size: int, calibrating: bool = False
             ) -> tuple[torch.fx.GraphModule, _QTrunk]:
    """The trunk with observers, and the float trunk it was made from."""
    from torch.ao.quantization.quantize_fx import prepare_fx

    if ENGINE not in torch.backends.quantized.supported_engines:
        raise EncoderError(f"torch {torch.__version__} has no {ENGINE!r} quantized engine for the int8 encoder; "
                           "use precision 'fp32' (--precision fp32 or SORA_SEARCH_PRECISION=fp32)")
    torch.backends.quantized.engine = ENGINE
    trunk = _QTrunk(copy.deepcopy(fused), tuple(taps), size).eval()
    example = (torch.zeros(1, 3, size, size),)
    mapping = _qconfig_mapping(trunk, calibrating)
    with _no_stack_traces():
        return prepare_fx(copy.deepcopy(trunk), mapping, example), trunk  # type: ignore[arg-type]


@contextmanager
def _no_stack_traces() -> Iterator[None]:
    """The quantization tracer records a stack trace per node, which imports torch._inductor (seconds); off
    inside, where torch has the setting, and the caller's setting restored after."""
    config: Any = getattr(torch.fx, "config", None)
    emit = getattr(config, "do_not_emit_stack_traces", None)
    if emit is None:  # an older torch
        yield
        return
    config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        config.do_not_emit_stack_traces = emit


def _activation_observers(prepared: torch.fx.GraphModule) -> dict[str, nn.Module]:
    return {name: m for name, m in prepared.named_modules()
            if name.startswith("activation_post_process") and hasattr(m, "min_val")}


def calibrate(fused: EfficientNetLite0, frames: np.ndarray, taps: tuple[int, ...], size: int = 224
              ) -> dict[str, list[float]]:
    """Activation ranges of the int8 trunk found on ``frames`` ((n, size, size, 3) uint8 RGB): the content of
    ``int8_ranges.json`` (made by ``benchmarks/speed/int8_calibrate.py``)."""
    prepared, _ = _prepare(fused, taps, size, calibrating=True)
    for observer in _relu_observers(prepared):
        observer.forward = _Clip6(observer)  # type: ignore[method-assign]
    batch = torch.from_numpy(np.ascontiguousarray(frames))
    with torch.inference_mode():
        for start in range(0, len(batch), 16):
            prepared(EfficientNetLite0.preprocess(batch[start:start + 16]))
    ranges = {}
    for name, obs in _activation_observers(prepared).items():
        low, high = obs._non_linear_param_search()  # type: ignore[operator]  # torch's own search; offline only
        ranges[name] = [float(low), float(high)]
    # The input's range is the preprocessing's, whole: 256 levels, one per pixel value, quantize it exactly.
    source = _input_observer(prepared)
    if source is not None:
        ranges[source] = [(0 - 127) / 128, (255 - 127) / 128]
    return ranges


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

    prepared, trunk = _prepare(fused, taps, size)
    observers = _activation_observers(prepared)
    if set(observers) != set(ranges):
        raise EncoderError(f"the int8 calibration names {len(ranges)} activations, this trunk has {len(observers)}; "
                           "use precision 'fp32' (--precision fp32)")
    for name, obs in observers.items():
        low, high = ranges[name]
        obs.min_val, obs.max_val = torch.tensor(float(low)), torch.tensor(float(high))
    model = convert_fx(prepared)
    _shape_ops_in_int8(model)
    _requantize_weights(model, trunk)
    logger.debug("quantized the EfficientNet-Lite0 trunk to int8 in %.1f s", time.perf_counter() - started)
    return model.eval()


@lru_cache(maxsize=2)
def cached_trunk(taps: tuple[int, ...], size: int = 224) -> torch.nn.Module:
    """:func:`quantize_trunk` of the packaged weights, once per process for each set of taps."""
    from sora_search.encoder.efficientnet import load_backbone

    return quantize_trunk(load_backbone().fused(), taps, size)
