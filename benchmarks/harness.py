"""Benchmark harness: repeated timing, spread, the machine, one JSON file per benchmark.

A benchmark is a module `benchmarks/bench_<name>.py` with `run(args) -> dict` that calls
`measure(...)` for each case and returns `record(...)`. Results land in
`benchmarks/results/<name>.json` (committed, so before/after compare as ratios in one run:
use `compare(baseline_case, candidate_case)` inside the same run, never across machines).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/meminfo") as handle:
            info["memory_kib"] = int(handle.readline().split()[1])
    except OSError:
        pass
    return info


def load_average() -> list[str] | None:
    """The machine's 1/5/15-minute load while measuring (timings inflate with it)."""
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().split()[:3]
    except OSError:
        return None


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Time `fn` `repeats` times after `warmup` calls; median and spread in seconds."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return {
        "repeats": repeats,
        "warmup": warmup,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "times_s": times,
    }


def compare(baseline: dict[str, Any], candidate: dict[str, Any]) -> float:
    """Speed-up of candidate over baseline (>1 is faster), from medians of the same run."""
    return baseline["median_s"] / candidate["median_s"]


def record(name: str, description: str, cases: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Assemble a result with its context and write it atomically to benchmarks/results/<name>.json."""
    import torch

    result = {
        "benchmark": name,
        "description": description,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
        "machine": machine_info(),
        "cases": cases,
        **extra,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return result


def synthetic_dataset(tmp: Path, sequences: dict[str, int], frames: int) -> tuple[Path, Path]:
    """The embedded benchmark at the active profile's sizes, generated and converted under `tmp`.

    Returns the MOTChallenge root and the Parquet clips root (one folder per split of `sequences`).
    """
    from pipeline.data.synthetic import generate
    from pipeline.params import load_params
    from pipeline.paths import REPO_ROOT
    from pipeline.steps.convert import run as convert

    counts = "{" + ", ".join(f"{split}: {count}" for split, count in sequences.items()) + "}"
    overrides = [
        f"synthetic.sequences={counts}",
        f"synthetic.frames={frames}",
        f"dataset.root={tmp / 'raw'}",
        "dataset.test_split=null",
    ]
    if "val" not in sequences:
        overrides.append("dataset.eval_split=train")
    params = load_params(REPO_ROOT / "params.yaml", overrides)
    generate(params.synthetic, tmp / "raw", progress=False)
    convert(params, tmp / "clips", progress=False)
    return tmp / "raw", tmp / "clips"
