"""Quality of the `detector` pseudo-label source: precision/recall at IoU 0.5 on the synthetic val split.

Runs the real stages with the default params in a work folder (generate → convert → train_detector
→ pseudo_labels, each timed), then labels the val split with the trained detector and scores the
boxes with score ≥ 0.5 against the val ground truth, next to a chance baseline (the same number of
boxes per frame at random places with ground-truth sizes). The detector is useful for PLD when it
beats chance by a wide margin.

    python -m benchmarks pseudo_labels            # work folder: $TMPDIR/motrv3_bench_pseudo_labels
    BENCH_PSEUDO_LABELS_WORKDIR=/tmp/x python -m benchmarks pseudo_labels   # reuse finished stages there
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import record

REPO = Path(__file__).resolve().parents[1]


def _stage(name: str, workdir: Path, *args: str) -> float:
    """Run `python -m stages.<name>` in `workdir` (relative data/ and models/ paths land there)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", f"stages.{name}", "--params", "params.yaml", *args],
        cwd=workdir,
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def _prepare_data(workdir: Path) -> dict[str, float]:
    """generate + convert: through their stages when they exist, else the data layer's functions."""
    times = {}
    if (REPO / "stages" / "generate.py").is_file() and (REPO / "stages" / "convert.py").is_file():
        times["generate_s"] = _stage("generate", workdir)
        times["convert_s"] = _stage("convert", workdir)
        return times
    from pipeline.data.synthetic import generate
    from pipeline.params import load_params
    from pipeline.steps.convert import run as convert

    params = load_params(workdir / "params.yaml")
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        start = time.perf_counter()
        generate(params.synthetic, "data/raw/synthetic", progress=False)
        times["generate_s"] = time.perf_counter() - start
        start = time.perf_counter()
        convert(params, progress=False)
        times["convert_s"] = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    return times


def evaluate(workdir: Path, split: str = "val", score_thresholds=(0.05, 0.3, 0.4, 0.5)) -> dict:
    """Precision/recall of the detector source and of chance on `split` (labels already written), per score cut."""
    from benchmarks.detection_quality import precision_recall, random_boxes_like
    from pipeline.data.pseudo_label_store import read_pseudo_labels
    from pipeline.data.reader import DatasetReader, FrameIndex
    from pipeline.steps.pseudo_labels.sources import gt_source

    labels = read_pseudo_labels(workdir / "data" / "pseudo_labels" / split, 0.0, ["detector"])
    truth = gt_source(DatasetReader(workdir / "data" / "clips" / split))
    index = FrameIndex.load(workdir / "data" / "clips" / split)
    result = {}
    for cut in score_thresholds:
        kept = {key: (boxes[scores >= cut], scores[scores >= cut]) for key, (boxes, scores) in labels.items()}
        result[f"score>={cut:g}"] = {
            "detector": precision_recall(labels, truth, 0.5, cut),
            "chance": precision_recall(random_boxes_like(kept, truth, index.sizes, seed=0), truth, 0.5, cut),
        }
    return result


def run(args) -> dict:
    default = Path(tempfile.gettempdir()) / "motrv3_bench_pseudo_labels"
    workdir = Path(os.environ.get("BENCH_PSEUDO_LABELS_WORKDIR", default))
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "params.yaml").exists():
        shutil.copy(REPO / "params.yaml", workdir / "params.yaml")
    times: dict[str, float] = {}
    if not (workdir / "data" / "clips" / "val" / "manifest.json").exists():
        times.update(_prepare_data(workdir))
    if not (workdir / "models" / "detector" / "checkpoint.pt").exists():
        times["train_detector_s"] = _stage("train_detector", workdir)
    times["pseudo_labels_train_s"] = _stage("pseudo_labels", workdir, "--no-progress")
    times["pseudo_labels_val_s"] = _stage(
        "pseudo_labels",
        workdir,
        "--split",
        "val",
        "--no-progress",
        "--set",
        "pseudo_labels.sources=[detector]",
    )
    quality = evaluate(workdir)
    headline = quality["score>=0.5"]
    summary = {
        "precision": round(headline["detector"]["precision"], 4),
        "recall": round(headline["detector"]["recall"], 4),
        "chance_precision": round(headline["chance"]["precision"], 4),
        "chance_recall": round(headline["chance"]["recall"], 4),
    }
    return record(
        "pseudo_labels",
        "detector pseudo labels vs ground truth on the synthetic val split, IoU 0.5 (summary: score ≥ 0.5)",
        {"quality": quality, "stage_times_s": times},
        summary=summary,
    )
