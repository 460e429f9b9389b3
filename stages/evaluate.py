"""Stage `evaluate`: TrackEval metrics of `results/<method>/<split>/`, or a submission archive for a test split.

Ground truth comes from the converted split (`data/clips/<split>/`, exported to MOTChallenge
layout). Labelled: `metrics/<method>.json` (flat, percentages, plus FPS from the track stage's
fps.json) and `metrics/<method>_per_sequence.csv`. Unlabelled (test): `results/<method>/<split>-submission.zip`.
The scores (and FPS) also go onto the MLflow run of the training behind the results (named in
fps.json by the track stage), so MLflow's Compare shows them beside that training's params.
To score any other folder: `motrv3 evaluate --gt DIR --results DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import CLIPS_DIR, FPS_FILE, METRICS_DIR, results_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--method", required=True, help="results/<method>/ to score (e.g. motr, motrv3)")
    parser.add_argument("--split", help="split (default: dataset.eval_split)")
    parser.add_argument(
        "--clips", default=str(CLIPS_DIR), help="converted datasets folder (default: %(default)s)"
    )
    parser.add_argument("--results", help="result files folder (default: results/<method>/<split>)")
    parser.add_argument(
        "--metrics-dir", default=str(METRICS_DIR), help="where metrics go (default: %(default)s)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the scores to MLflow")
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console(f"evaluate_{args.method}", args.verbose):
        _evaluate(args, params)


def _evaluate(args: argparse.Namespace, params) -> None:
    from pipeline.evaluation import submission
    from pipeline.formats.errors import DataError
    from pipeline.steps import evaluate

    split = args.split or params.dataset.eval_split
    results = Path(args.results) if args.results else results_dir(args.method, split)
    if not results.is_dir():
        sys.exit(f"error: {results}: no results (run the track stage)")
    # The eval split's metrics are the method's headline numbers; other splits get their own name.
    stem = args.method if split == params.dataset.eval_split else f"{args.method}_{split}"
    try:
        outcome = evaluate.run(
            params,
            results,
            Path(args.clips) / split,
            args.metrics_dir,
            stem,
            submission_archive=submission.submission_path(args.method, split),
        )
    except (DataError, FileNotFoundError, ValueError, evaluate.EvaluationError) as error:
        sys.exit(f"error: {error}")
    if isinstance(outcome, Path):
        say(f"{split} has no labels: wrote {outcome} for the {evaluate.benchmark_of(params)} server")
        return
    say(evaluate.format_table(outcome))
    if not args.no_mlflow:
        say(log_to_training_run(params, results, Path(args.metrics_dir), stem, split))


def log_to_training_run(params, results: Path, metrics_dir: Path, stem: str, split: str) -> str:
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
    if not log_scores(run_id, scores, params.mlflow.tracking_uri, prefix, files):
        return f"MLflow: training run {run_id} is not in the store; scores not logged"
    return f"MLflow: {prefix}HOTA and {len(scores) - 1} more scores logged on training run {run_id}"


if __name__ == "__main__":
    main()
