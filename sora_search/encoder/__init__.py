"""Frame encoders: uint8 RGB frames -> L2-normalised descriptors, plus the projection fitted on a library.

``import sora_search.encoder`` does not import torch: the torch encoders live in submodules that
:func:`load_encoder` imports when asked for one, so ``sora-search --help`` stays fast.

Encoders (:data:`ENCODERS`):

* ``sora-lite0``: the Sora pooling encoder, multi-scale regional max pooling of four EfficientNet-Lite0 stages
  (704-d, 224 px). See :mod:`sora_search.encoder.sora`.
* ``sora-lite0-gap``: ablation, global average pool of the backbone's 1280-ch head (1280-d, 224 px).
* ``tiny``: NumPy-only 64-d colour layout descriptor (32 px) for fast tests.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import replace

from sora_search.encoder.base import PRECISIONS, Encoder, EncoderIdentity, l2_normalize, temporal_pool
from sora_search.encoder.projection import Projection
from sora_search.errors import EncoderError
from sora_search.params import DEFAULT_ENCODER
from sora_search.threads import available_cpus

__all__ = [
    "ENCODERS",
    "REGION_ENCODERS",
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderIdentity",
    "PRECISIONS",
    "cpu_has_bf16",
    "Projection",
    "device_setting",
    "l2_normalize",
    "encoder_identity",
    "load_encoder",
    "precision_setting",
    "resolve_device",
    "temporal_pool",
]

logger = logging.getLogger(__name__)

ENCODERS: tuple[str, ...] = ("sora-lite0", "sora-lite0-gap", "tiny")
# Those whose vectors come with region vectors (``Encoder.region_count`` > 0), known without loading them.
REGION_ENCODERS: tuple[str, ...] = ("sora-lite0",)
DEVICE_ENV = "SORA_SEARCH_DEVICE"
PRECISION_ENV = "SORA_SEARCH_PRECISION"
# Encoders with bf16 and int8 builds: opt-in, not the default, as their scores move more than a default may
# (docs/tuning.md).
_REDUCED = ("sora-lite0",)
# Frames per encoder batch (docs/tuning.md): on a CPU, float32 runs as fast in the pipeline at 4 as at 8 or 32 with
# less memory; int8, whose activations take a quarter of the bytes, keeps 8; bf16 runs fastest at 8.
_DEFAULT_BATCH = {("cpu", "fp32"): 4, ("cpu", "bf16"): 8, ("cpu", "int8"): 8, ("cuda", "fp32"): 128,
                  ("cuda", "bf16"): 128}
_THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")
THP_ENV = "THP_MEM_ALLOC_ENABLE"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
MMAP_THRESHOLD = 4 << 20  # bytes; glibc's M_MMAP_THRESHOLD, see keep_large_blocks_mapped
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
_threads_checked = False


# Identities of the built-in encoders, known without importing torch or loading weights (an unchanged library is
# re-indexed, and an index's identity checked, without building a model). tests/test_encoder.py checks that each
# loaded encoder reports exactly this identity.
_IDENTITIES: dict[str, EncoderIdentity] = {
    "sora-lite0": EncoderIdentity("sora-lite0", "1", 704, 224),
    "sora-lite0-gap": EncoderIdentity("sora-lite0-gap", "1", 1280, 224),
    "tiny": EncoderIdentity("tiny", "1", 64, 32),
}


def encoder_identity(name: str, precision: str = "fp32") -> EncoderIdentity:
    """The identity an encoder will have once loaded, without loading it.

    Raises:
        EncoderError: unknown name, or a precision the encoder does not have.
    """
    if name not in _IDENTITIES:
        raise EncoderError(f"unknown encoder {name!r}; known encoders: {', '.join(ENCODERS)}")
    if precision == "fp32":
        return _IDENTITIES[name]
    if precision in PRECISIONS and name in _REDUCED:
        return replace(_IDENTITIES[name], precision=precision)
    raise EncoderError(f"encoder {name!r} has no {precision!r} build; use precision 'fp32'")


def _argument_or_env(value: str | None, env: str) -> tuple[str | None, str]:
    """``value`` if given, else ``$env`` (None when unset or empty), stripped and lower-cased, with where it came
    from."""
    source = "argument" if value is not None else f"${env}"
    if value is None:
        value = os.environ.get(env) or None
    return (None if value is None else value.strip().lower()), source


def precision_setting(precision: str | None) -> tuple[str | None, str]:
    """The precision asked for: the argument, else ``$SORA_SEARCH_PRECISION``; None means "the default".

    Returns:
        (``"fp32"``, ``"bf16"``, ``"int8"`` or None; where it came from: ``"argument"`` or
        ``"$SORA_SEARCH_PRECISION"``).

    Raises:
        EncoderError: anything else.
    """
    precision, source = _argument_or_env(precision, PRECISION_ENV)
    if precision is not None and precision not in PRECISIONS:
        raise EncoderError(f"unknown precision {precision!r} (from {source}); use one of {', '.join(PRECISIONS)}")
    return precision, source


def load_encoder(name: str = DEFAULT_ENCODER, *, device: str | None = None, batch_size: int | None = None,
                 precision: str = "fp32") -> Encoder:
    """Build an encoder by name, with its weights loaded.

    Args:
        name: one of :data:`ENCODERS`.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default: env ``SORA_SEARCH_DEVICE``, else CUDA when
            available, else CPU. ``tiny`` always runs on CPU and ignores it; so does int8, which has CPU kernels only.
        batch_size: frames per forward pass; default 4 on CPU (8 in bf16 and int8), 128 on CUDA.
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (the last two ``sora-lite0`` only; int8 quantized once per
            process).

    Raises:
        EncoderError: unknown name or precision, CUDA asked for but unavailable, or weights missing.
    """
    if name not in ENCODERS:
        raise EncoderError(f"unknown encoder {name!r}; known encoders: {', '.join(ENCODERS)}")
    encoder_identity(name, precision)
    if batch_size is not None and batch_size < 1:
        raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
    if name == "tiny":
        from sora_search.encoder.tiny import TinyEncoder

        return TinyEncoder() if batch_size is None else TinyEncoder(batch_size=batch_size)

    _torch_env()
    resolved = resolve_device(device)
    if precision == "int8" and resolved != "cpu":
        logger.debug("int8 encoder: running on the CPU, not %s (no int8 kernels there)", resolved)
        resolved = "cpu"
    if precision == "bf16" and resolved == "cpu" and not cpu_has_bf16():
        logger.warning("this CPU reports no bf16 instructions (amx_bf16, avx512_bf16): the bf16 encoder emulates "
                       "them here and runs several times slower than fp32; an index built in fp32 is faster to search "
                       "on this machine")
    _limit_threads()
    kind = "cuda" if resolved.startswith("cuda") else "cpu"
    bs = batch_size if batch_size is not None else _DEFAULT_BATCH[kind, precision]

    from sora_search.encoder.efficientnet import load_backbone
    from sora_search.encoder.sora import SoraLite0Encoder, SoraLite0GapEncoder

    backbone = load_backbone()
    encoder: Encoder
    if name == "sora-lite0":
        encoder = SoraLite0Encoder(backbone, device=resolved, batch_size=bs, precision=precision)
    else:
        encoder = SoraLite0GapEncoder(backbone, device=resolved, batch_size=bs)
    logger.debug("loaded %r", encoder)
    return encoder


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports bfloat16 instructions (x86 ``amx_bf16`` or ``avx512_bf16``; Linux only), where the
    bf16 encoder is fast: elsewhere oneDNN emulates them, several times slower than float32 (docs/tuning.md)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool({"amx_bf16", "avx512_bf16"} & set(line.partition(":")[2].split()))
    except OSError:
        pass
    return False


def _torch_env() -> None:
    """Before torch is imported, unless the caller decided: transparent huge pages for its large CPU tensors
    (THP_MEM_ALLOC_ENABLE=1), and OpenMP threads that sleep when they wait (OMP_WAIT_POLICY=PASSIVE).

    torch's CPU allocator maps every large tensor afresh and unmaps it when freed, so each activation of each batch
    faults its pages in again, 4 KiB at a time; on a virtual machine those faults cost as much as the convolutions.
    With huge pages (2 MiB) there are 512x fewer. OpenMP's threads spin at the end of every parallel region until
    the slowest arrives: while a decode worker holds a core, the encoder's other thread spins on the one left, and a
    busy machine's index run spent far more CPU time encoding the same frames. torch reads both once, when it
    starts, so they are set only when torch is not imported yet (the measurements are in docs/tuning.md).
    """
    if "torch" not in sys.modules:
        os.environ.setdefault(THP_ENV, "1")
        os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")


def keep_large_blocks_mapped() -> None:
    """For an index run: blocks of ``MMAP_THRESHOLD`` bytes and more mapped afresh and given back when freed (glibc),
    for the rest of the process, unless the caller decided (``MALLOC_MMAP_THRESHOLD_``).

    glibc raises its threshold to the largest mapped block freed so far (up to 32 MiB): from then on frame batches and
    activations come from the heaps of the threads that allocate them, which keep the pages, and with several files
    embedded at once the indexer grew by about 100 MiB. Queries are left to glibc's default: their views at 2S fault
    in more pages than they keep (docs/tuning.md).
    """
    if os.environ.get(MMAP_THRESHOLD_ENV) is not None or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def device_setting(device: str | None) -> tuple[str | None, str]:
    """The device asked for, before asking torch what it has: the argument, else ``$SORA_SEARCH_DEVICE``.

    Returns:
        (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None for "choose", where it came from: ``"argument"`` or
        ``"$SORA_SEARCH_DEVICE"``).

    Raises:
        EncoderError: anything else.
    """
    device, source = _argument_or_env(device, DEVICE_ENV)
    if device is None or device in ("cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return device, source
    raise EncoderError(f"unknown device {device!r} (from {source}); use 'cpu', 'cuda' or 'cuda:N'")


def resolve_device(device: str | None) -> str:
    """Where :func:`load_encoder` runs a torch encoder: :func:`device_setting`, else CUDA if available, else CPU.

    Raises:
        EncoderError: a malformed setting, or a CUDA device torch does not have.
    """
    import torch

    device, source = device_setting(device)
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not torch.cuda.is_available():
        raise EncoderError(
            f"device {device!r} (from {source}) was requested but CUDA is not available to torch "
            f"{torch.__version__}; use device='cpu' or install a CUDA build of torch"
        )
    if ":" in device and int(device[5:]) >= torch.cuda.device_count():
        raise EncoderError(f"device {device!r} (from {source}) does not exist: "
                           f"{torch.cuda.device_count()} CUDA device(s) visible")
    return device


def _limit_threads() -> None:
    """Cap torch's intra-op threads at the CPUs this process may use, unless the caller chose a count.

    torch sizes its pool from the machine's cores, which in a container can exceed the CPUs actually
    granted and makes every op oversubscribe. Runs once per process and never raises the count.
    """
    global _threads_checked
    if _threads_checked:
        return
    _threads_checked = True
    if any(os.environ.get(var) for var in _THREADS_ENV):
        return
    import torch

    available = available_cpus()
    if torch.get_num_threads() > available:
        logger.debug("limiting torch to %d threads (was %d)", available, torch.get_num_threads())
        torch.set_num_threads(available)
