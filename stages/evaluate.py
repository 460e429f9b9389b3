"""Stage `evaluate`: TrackEval metrics of `results/<method>/<split>/`, or a submission archive for a test split.

Ground truth comes from the converted split (`data/clips/<split>/`, exported to MOTChallenge
layout). Labelled: `metrics/<method>.json` (flat, percentages, plus FPS from the track stage's
fps.json) and `metrics/<method>_per_sequence.csv`. Unlabelled (test): `results/<method>/<split>-submission.zip`.
The scores (and FPS) also go onto the MLflow run of the training behind the results (named in
fps.json by the track stage), so MLflow's Compare shows them beside that training's params.
To score any other folder: `motrv3 evaluate --gt DIR --results DIR`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.console import say, stage_console
from pipeline.entry import (
    add_clips_dir,
    add_metrics_dir,
    add_split,
    command_parser,
    params_from_args,
    user_errors,
)
from pipeline.paths import results_dir


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.evaluate", __doc__)
    parser.add_argument("--method", required=True, help="results/<method>/ to score (e.g. motr, motrv3)")
    add_split(parser, "dataset.eval_split")
    add_clips_dir(parser)
    parser.add_argument("--results", help="result files folder (default: results/<method>/<split>)")
    add_metrics_dir(parser)
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the scores to MLflow")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console(f"evaluate_{args.method}", args.verbose):
        from pipeline.formats.errors import DataError
        from pipeline.steps import evaluate

        split = args.split or params.dataset.eval_split
        results = Path(args.results) if args.results else results_dir(args.method, split)
        if not results.is_dir():
            sys.exit(f"error: {results}: no results (run the track stage)")
        metrics_dir = Path(args.metrics_dir)
        with user_errors(DataError, FileNotFoundError, ValueError, evaluate.EvaluationError):
            outcome = evaluate.run_method(
                params, args.method, split, Path(args.clips_dir) / split, results, metrics_dir
            )
        if isinstance(outcome, Path):
            say(f"{split} has no labels: wrote {outcome} for the {evaluate.benchmark_of(params)} server")
            return
        say(evaluate.format_table(outcome))
        if not args.no_mlflow:
            stem = evaluate.metrics_stem(params, args.method, split)
            say(evaluate.log_to_training_run(params, results, metrics_dir, stem, split))


if __name__ == "__main__":
    main()
