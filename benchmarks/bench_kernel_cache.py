"""Loading the C++ deformable-attention kernel from a second checkout of the same code.

Every DVC experiment, `ray job submit` working directory and test that copies the project is a
second checkout. Each case is a fresh Python process timed from start to the kernel loaded, in
this order, in two copies A and B of `motrv3/` sharing one empty build cache:
  ours_first_build       A: `motrv3.ops.extension.load_cpu()`, the cache empty (a full build)
  ours_same_checkout     A again: the library is only loaded
  ours_second_checkout   B, same code: one build per content of csrc/, so only loaded
  ours_back_to_first     A again after B
  per_checkout_*         the same order with cpp_extension compiling the checkout's own csrc/
                         paths into one shared folder, as `motrv3.ops.extension` did before
                         commit 5b7dc64: ninja records absolute paths, so B rebuilds and A after it
                         rebuilds again
Ratios: `per_checkout_over_ours_second` and `per_checkout_over_ours_back` (>1: ours is faster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import compare, load_average, record
from pipeline.paths import REPO_ROOT

OURS = "import motrv3.ops.extension as e; assert e.load_cpu() is not None"
PER_CHECKOUT = """
import sys
from pathlib import Path
from torch.utils import cpp_extension
import motrv3.ops.extension as e
avx = ["-mavx2", "-mfma"] if e._has_avx2() else []
cpp_extension.load(
    name="motrv3_msda_cpu" + ("_avx2" if avx else ""),
    sources=[str(Path("motrv3/ops/csrc/ms_deform_attn_cpu.cpp").resolve())],
    build_directory=sys.argv[1], extra_cflags=["-O3", "-fopenmp", *avx], extra_ldflags=["-fopenmp"],
    is_python_module=False, verbose=False,
)
"""


def _timed(code: str, checkout: Path, cache: Path, *argv: str) -> dict:
    env = {**os.environ, "MOTRV3_EXTENSIONS_DIR": str(cache), "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=checkout, env=env, check=True, capture_output=True
    )
    return {"seconds": time.perf_counter() - start, "checkout": checkout.name}


def run(args) -> dict:
    cases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="motrv3-bench-kernel-") as tmp:
        root = Path(tmp)
        checkouts = [root / "A", root / "B"]
        for checkout in checkouts:
            shutil.copytree(
                REPO_ROOT / "motrv3", checkout / "motrv3", ignore=shutil.ignore_patterns("__pycache__")
            )
        a, b = checkouts
        ours, shared = root / "cache-ours", root / "cache-per-checkout"
        shared.mkdir()
        for label, checkout in (
            ("first_build", a),
            ("same_checkout", a),
            ("second_checkout", b),
            ("back_to_first", a),
        ):
            cases[f"ours_{label}"] = _timed(OURS, checkout, ours)
            cases[f"per_checkout_{label}"] = _timed(PER_CHECKOUT, checkout, ours, str(shared))
    seconds = {name: case["seconds"] for name, case in cases.items()}

    def ratio(old: str, new: str) -> float:
        return compare({"median_s": seconds[old]}, {"median_s": seconds[new]})

    summary = {
        **{f"{name}_s": value for name, value in seconds.items()},
        "per_checkout_over_ours_second": ratio("per_checkout_second_checkout", "ours_second_checkout"),
        "per_checkout_over_ours_back": ratio("per_checkout_back_to_first", "ours_back_to_first"),
    }
    return record(
        "kernel_cache",
        __doc__.strip().splitlines()[0],
        cases,
        summary=summary,
        repeats=1,
        load_average=load_average(),
    )
