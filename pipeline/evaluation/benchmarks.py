"""TrackEval benchmarks: which ground truth counts. Benchmarks differ only in that:

- MOT16/17/20: TrackEval's preprocessing as on the MOTChallenge server (tracker boxes matched to
  distractor classes are removed; only class 1 with conf ≠ 0 is scored).
- DanceTrack, synthetic, custom: only class 1 (pedestrian) rows are ground truth; boxes on anything
  else count as false positives (conf 0 rows are still ignored). DanceTrack and synthetic gt rows
  must all be class 1, as the converter requires.

A dataset's benchmark comes from the dataset table (`pipeline.datasets`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.datasets import DATASETS


@dataclass(frozen=True)
class Benchmark:
    name: str
    trackeval_benchmark: str  # TrackEval's BENCHMARK (selects its distractor classes)
    class_one_only: bool  # ground truth = class 1 rows only (no distractor handling)
    rules: str  # which gt rows are valid: the converter's benchmark (`motchallenge.BENCHMARKS`)


BENCHMARKS: dict[str, Benchmark] = {
    b.name.lower(): b
    for b in (
        Benchmark("MOT17", "MOT17", class_one_only=False, rules="mot17"),
        Benchmark("MOT16", "MOT16", class_one_only=False, rules="mot17"),
        Benchmark("MOT20", "MOT20", class_one_only=False, rules="mot17"),
        Benchmark("DanceTrack", "MOT17", class_one_only=True, rules="dancetrack"),
        Benchmark("synthetic", "MOT17", class_one_only=True, rules="synthetic"),
        Benchmark("custom", "MOT17", class_one_only=True, rules="custom"),
    )
}


def benchmark_of(params) -> str:
    """`evaluate.benchmark`, else the benchmark of `dataset.name` (the dataset table's)."""
    return params.evaluate.benchmark or DATASETS[params.dataset.name].benchmark


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        known = ", ".join(b.name for b in BENCHMARKS.values())
        raise ValueError(f"unknown benchmark {name!r}; known: {known}") from None
