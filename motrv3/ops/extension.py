"""Build-on-first-use of the C++/CUDA kernels with `torch.utils.cpp_extension.load` (ninja).

Builds are cached by cpp_extension in `$MOTRV3_EXTENSIONS_DIR` if set, else in
`$TORCH_EXTENSIONS_DIR` / `~/.cache/torch_extensions`; a later process only loads the library.
A failed build (no compiler, no nvcc) warns once and reports the kernel as unavailable.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_NAMESPACE = "motrv3_msda_cpu"
CUDA_NAMESPACE = "motrv3_msda_cuda"


def _build_directory(name: str) -> str | None:
    root = os.environ.get("MOTRV3_EXTENSIONS_DIR")
    if not root:
        return None  # cpp_extension's default cache
    path = Path(root).expanduser() / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _load(name: str, sources: list[Path], **kwargs: Any) -> None:
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources],
        build_directory=_build_directory(name),
        is_python_module=False,  # the library registers ops with TORCH_LIBRARY
        verbose=False,
        **kwargs,
    )


def _has_avx2() -> bool:
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def load_cpu() -> Any | None:
    """The `torch.ops` namespace of the C++ CPU kernel, or None (with one warning) if it cannot build."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        warnings.warn(
            f"motrv3.ops: no C++ compiler ({compiler!r}); deformable attention falls back to the PyTorch path",
            stacklevel=2,
        )
        return None
    # AVX2+FMA roughly doubles the kernel's speed; the name keeps such builds apart in the cache.
    vector_flags = ["-mavx2", "-mfma"] if _has_avx2() else []
    try:
        _load(
            "motrv3_msda_cpu" + ("_avx2" if vector_flags else ""),
            [CSRC / "ms_deform_attn_cpu.cpp"],
            extra_cflags=["-O3", "-fopenmp", *vector_flags],
            extra_ldflags=["-fopenmp"],
        )
    except Exception as error:  # compiler errors, missing ninja, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"motrv3.ops: building the CPU kernel failed ({first_line}); using the PyTorch path", stacklevel=2
        )
        return None
    return getattr(torch.ops, CPU_NAMESPACE)


@functools.cache
def load_cuda() -> Any | None:
    """The `torch.ops` namespace of the CUDA kernel, or None (with one warning) without CUDA or nvcc."""
    if not torch.cuda.is_available():
        return None
    try:
        _load(
            "motrv3_msda_cuda",
            [CSRC / "ms_deform_attn_cuda.cpp", CSRC / "ms_deform_attn_cuda.cu"],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
        )
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(f"motrv3.ops: building the CUDA kernel failed ({first_line})", stacklevel=2)
        return None
    return getattr(torch.ops, CUDA_NAMESPACE)
