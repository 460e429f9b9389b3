"""Process set-up for the pipeline's compute processes: torch threads, the allocator, the device.

The one place such set-up happens: every entry point that runs the model (training workers, the
tracker, pseudo-label predictors, `motrv3 track`) calls `configure_process` first. The model
library (`motrv3/`) never changes process-wide settings itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import torch

log = logging.getLogger(__name__)
RETAIN_ENV = "MOTRV3_RETAIN_FREED_MEMORY"


def retain_freed_memory() -> bool:
    """Ask glibc malloc to keep freed memory for reuse instead of unmapping it (process-wide).

    PyTorch's CPU tensors come from malloc; blocks above the mmap threshold are mapped fresh and
    zero-filled by the kernel on every allocation. Raising the mmap and trim thresholds lets the
    heap reuse them: no page faults in steady state, at the price of keeping the process's peak
    heap mapped (benchmarks/bench_model.py: `before` vs `after/reference` is this setting alone).
    Opt out with MOTRV3_RETAIN_FREED_MEMORY=0. Returns whether it took effect.
    """
    if os.environ.get(RETAIN_ENV, "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None or "libc.so" not in name:  # not glibc (macOS, musl): nothing to tune
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    ok = mallopt(m_mmap_threshold, 1 << 30) == 1 and mallopt(m_trim_threshold, (1 << 31) - 1) == 1
    if not ok:
        log.debug("retain_freed_memory: mallopt refused")
    return ok


def configure_process(threads: int | None = None) -> None:
    """torch intra-op threads (`threads`, default: the machine's cores up to 4) and the allocator."""
    torch.set_num_threads(max(1, threads or min(4, os.cpu_count() or 1)))
    retain_freed_memory()


def resolve_device(device: str = "auto") -> str:
    """`auto` → cuda when available, else cpu; an unavailable cuda device is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return device
