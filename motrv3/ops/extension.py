"""Build-on-first-use of the C++/CUDA kernels with `torch.utils.cpp_extension.load` (ninja).

Builds are cached under `$MOTRV3_EXTENSIONS_DIR` if set, else cpp_extension's root
(`$TORCH_EXTENSIONS_DIR` / `~/.cache/torch_extensions`), one folder per kernel, interpreter, torch
build and content of `csrc/`, compiled from a copy of the sources kept in that folder. Ninja
records the sources' absolute paths: compiled from the checkout, every other checkout of the same
code (a second clone, the copies `dvc exp run`, `ray job submit` and the tests work in) rebuilt
it, and the first one rebuilt it again after (18 s of C++ each time here; minutes of CUDA). A
later process only loads the library. A failed build (no compiler, no nvcc) warns once and
reports the kernel as unavailable.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_NAMESPACE = "motrv3_msda_cpu"
CUDA_NAMESPACE = "motrv3_msda_cuda"


def build_directory(name: str) -> Path:
    """`<root>/<name>-<digest of csrc/>`: the same code shares one build wherever it is checked out."""
    from torch.utils import cpp_extension

    root = os.environ.get("MOTRV3_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    # the interpreter and torch build too, as cpp_extension's own py311_cu130-style folders do
    digest = hashlib.sha256(f"{sys.version_info[:2]} {torch.__version__} {torch.version.cuda}".encode())
    for source in sorted(CSRC.iterdir()):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return Path(root).expanduser() / f"{name}-{digest.hexdigest()[:12]}"


def _stable_sources(folder: Path, sources: list[Path]) -> list[str]:
    """Copies of `csrc/` in the build folder (headers too), written only where missing or different:
    a rewritten file's new mtime alone would make ninja rebuild."""
    copies = folder / "src"
    copies.mkdir(parents=True, exist_ok=True)
    for source in CSRC.iterdir():
        copy = copies / source.name
        content = source.read_bytes()
        if not copy.is_file() or copy.read_bytes() != content:
            partial = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
            partial.write_bytes(content)
            partial.replace(copy)  # atomic: a concurrent worker never compiles half a file
    return [str(copies / s.name) for s in sources]


def _load(name: str, sources: list[Path], **kwargs: Any) -> None:
    from torch.utils import cpp_extension

    folder = build_directory(name)
    cpp_extension.load(
        name=name,
        sources=_stable_sources(folder, sources),
        build_directory=str(folder),
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
