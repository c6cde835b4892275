"""FAISS itself, loaded once with its threads capped, and its GPU side: which GPU to use and copies onto it.

faiss-cpu (the default install) has no GPU support, so every GPU path here falls back to the CPU, said once in the
log. faiss is imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from sora_search.threads import available_cpus

logger = logging.getLogger(__name__)

# faiss's GPU k-selection handles k (and nprobe) up to 2048; a larger k searches the CPU index.
GPU_MAX_K = 2048

_faiss_module: Any = None
# One StandardGpuResources per GPU for the process: each one reserves scratch memory on its device.
_gpu_resources: dict[int, Any] = {}


def faiss() -> Any:
    """The faiss module, imported once, its OpenMP threads capped at the CPUs this process may use."""
    global _faiss_module
    if _faiss_module is None:
        import faiss as module

        if module.omp_get_max_threads() > available_cpus():
            module.omp_set_num_threads(available_cpus())
        _faiss_module = module
    return _faiss_module


def faiss_gpu_count() -> int:
    """GPUs the installed faiss can use: 0 with faiss-cpu (built without GPU support) or when none is visible."""
    fx = faiss()
    if not hasattr(fx, "StandardGpuResources"):
        return 0
    try:
        return int(fx.get_num_gpus())
    except (AttributeError, RuntimeError):
        return 0


def faiss_gpu_for(device: str | None) -> int | None:
    """The GPU FAISS should use for a device setting, or None for the CPU.

    ``device`` is a setting as :func:`sora_search.encoder.device_setting` returns it (that function reads and checks
    what the user gave), so a malformed value here is a caller's bug.

    ``None`` (auto) takes GPU 0 when the faiss build has GPU support and sees a GPU. ``"cuda"`` / ``"cuda:N"``
    take GPU 0 / N when faiss can use it and otherwise fall back to the CPU (logged, not an error: faiss-cpu is
    the default install, and the encoder may still run on CUDA). ``"cpu"`` keeps FAISS on the CPU.

    Raises:
        ValueError: ``device`` is not None, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    if device == "cpu":
        return None
    if device is None or device == "cuda":
        gpu = 0
    elif device.startswith("cuda:") and device[5:].isdigit():
        gpu = int(device[5:])
    else:
        raise ValueError(f"faiss_gpu_for takes a checked device setting (encoder.device_setting), got {device!r}")
    count = faiss_gpu_count()
    if gpu < count:
        return gpu
    if device is not None:
        logger.info("FAISS searches on the CPU although device %r was asked for: %s", device, _gpu_shortfall(count))
    return None


def _gpu_shortfall(count: int) -> str:
    if not hasattr(faiss(), "StandardGpuResources"):
        return "this faiss build has no GPU support (faiss-cpu); install faiss-gpu-cu12 in its place"
    return f"faiss sees {count} GPU(s)" + (" (no CUDA device is visible)" if count == 0 else "")


def gpu_clone(index: Any, gpu: int) -> Any:
    """A copy of the CPU ``index`` on GPU ``gpu`` (faiss's own kernels; 64-bit ids as on the CPU)."""
    fx = faiss()
    if gpu not in _gpu_resources:
        _gpu_resources[gpu] = fx.StandardGpuResources()
    options = fx.GpuClonerOptions()
    if hasattr(options, "use_cuvs"):
        options.use_cuvs = False  # cuVS has no IVF-SQ; one implementation for both encodings
    return fx.index_cpu_to_gpu(_gpu_resources[gpu], gpu, index, options)


def check_gpu(gpu: int) -> None:
    count = faiss_gpu_count()
    if not 0 <= gpu < count:
        raise ValueError(f"faiss cannot use GPU {gpu}: {_gpu_shortfall(count)}")


