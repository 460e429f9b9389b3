"""The evaluate step: a method's results on a converted split scored by TrackEval (`pipeline.evaluation`).

A labelled split gives `metrics/<stem>.json` (flat, percentages, plus FPS from the track step's
fps.json) and `metrics/<stem>_per_sequence.csv`; a split without labels (test) gives a submission
archive. The scores also go onto the MLflow run of the training behind the results (named in
fps.json by the track step), so MLflow's Compare shows them beside that training's params.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.evaluation.benchmarks import benchmark_of
from pipeline.evaluation.split import score_split
from pipeline.evaluation.submission import submission_path
from pipeline.evaluation.trackeval_runner import Evaluation, EvaluationError, format_table
from pipeline.params import Params
from pipeline.paths import FPS_FILE, METRICS_DIR

__all__ = [
    "EvaluationError",
    "benchmark_of",
    "format_table",
    "log_to_training_run",
    "metrics_stem",
    "run",
    "run_method",
]


def metrics_stem(params: Params, method: str, split: str) -> str:
    """The eval split's metrics are the method's headline numbers; other splits get their own name."""
    return method if split == params.dataset.eval_split else f"{method}_{split}"


def run(
    params: Params,
    results: str | Path,
    dataset_dir: str | Path,
    metrics_dir: str | Path = METRICS_DIR,
    stem: str = "metrics",
    benchmark: str | None = None,
    submission_archive: str | Path | None = None,
) -> Evaluation | Path:
    """Score `results/<seq>.txt` against the split (`pipeline.evaluation.split.score_split`)."""
    return score_split(params, results, dataset_dir, metrics_dir, stem, benchmark, submission_archive)


def run_method(
    params: Params, method: str, split: str, dataset_dir: Path, results: Path, metrics_dir: Path
) -> Evaluation | Path:
    """`run` for `results/<method>/<split>`: metrics under the method's stem, else its archive."""
    return run(
        params,
        results,
        dataset_dir,
        metrics_dir,
        metrics_stem(params, method, split),
        submission_archive=submission_path(method, split),
    )


def log_to_training_run(params: Params, results: Path, metrics_dir: Path, stem: str, split: str) -> str:
    """The scores onto the training's MLflow run (prefixed `<split>/` for a split other than the
    eval split); returns the line to show."""
    from pipeline.mlflow_utils import log_scores

    fps_file = results / FPS_FILE
    timing = json.loads(fps_file.read_text()) if fps_file.is_file() else {}
    run_id = (timing.get("training") or {}).get("mlflow_run_id")
    if not run_id:
        return "MLflow: no training run recorded with these results (not from the train stage); not logged"
    scores = json.loads((metrics_dir / f"{stem}.json").read_text())
    prefix = "" if split == params.dataset.eval_split else f"{split}/"
    files = [metrics_dir / f"{stem}.json", metrics_dir / f"{stem}_per_sequence.csv"]
    files += [path for path in [metrics_dir / f"{stem}_per_class.csv"] if path.is_file()]  # several classes
    if not log_scores(run_id, scores, params.mlflow.tracking_uri, prefix, files):
        return f"MLflow: training run {run_id} is not in the store; scores not logged"
    return f"MLflow: {prefix}HOTA and {len(scores) - 1} more scores logged on training run {run_id}"
