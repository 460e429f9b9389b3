"""Stage `evaluate`: TrackEval metrics of `results/<method>/<split>/`, or a submission archive for a test split.

Ground truth comes from the converted split (`data/clips/<split>/`, exported to MOTChallenge
layout). Labelled: `metrics/<method>.json` (flat, percentages, plus FPS from the track stage's
fps.json) and `metrics/<method>_per_sequence.csv`. Unlabelled (test): `results/<method>/<split>-submission.zip`.
To score any other folder: `motrv3 evaluate --gt DIR --results DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import CLIPS_DIR, METRICS_DIR


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
    args = parser.parse_args(argv)
    params = params_from_args(args)

    from pipeline import evaluation, mot_io, submission
    from pipeline.data.loader import export_motchallenge_gt, list_sequences
    from pipeline.data.parquet_io import read_manifest
    from pipeline.tracking import FPS_FILE, results_dir

    split = args.split or params.dataset.eval_split
    benchmark = params.evaluate.benchmark or evaluation.DATASET_BENCHMARK[params.dataset.name]
    results = Path(args.results) if args.results else results_dir(args.method, split)
    dataset_dir = Path(args.clips) / split
    if not results.is_dir():
        sys.exit(f"error: {results}: no results (run the track stage)")
    try:
        with tempfile.TemporaryDirectory(prefix="motrv3-gt-") as gt_dir:
            labelled = export_motchallenge_gt(dataset_dir, gt_dir)
            if not labelled:
                # A test split: validate and package the results for the benchmark's server.
                entries = read_manifest(dataset_dir)["sequences"]
                sequences = [
                    evaluation.GroundTruthSequence(
                        name, mot_io.SeqInfo(name, entries[name]["last_frame"]), None
                    )
                    for name in list_sequences(dataset_dir)
                ]
                archive = submission.submission_path(args.method, split)
                names = submission.make_submission(results, sequences, benchmark, archive)
                print(
                    f"{split} has no labels: wrote {archive} ({len(names)} files) for the {benchmark} server"
                )
                return
            unlabelled = sorted(set(list_sequences(dataset_dir)) - set(labelled))
            if unlabelled:
                raise FileNotFoundError(
                    f"{dataset_dir}: sequences {unlabelled} have no ground truth, others do"
                )
            result = evaluation.evaluate_folder(gt_dir, results, benchmark)
    except (mot_io.MOTFormatError, FileNotFoundError, ValueError, evaluation.EvaluationError) as error:
        sys.exit(f"error: {error}")
    extra = {}
    fps_file = results / FPS_FILE
    if fps_file.is_file():
        extra["FPS"] = float(json.loads(fps_file.read_text())["fps"])
    metrics_dir = Path(args.metrics_dir)
    # The eval split's metrics are the method's headline numbers; other splits get their own name.
    stem = args.method if split == params.dataset.eval_split else f"{args.method}_{split}"
    evaluation.write_metrics_json(result, metrics_dir / f"{stem}.json", **extra)
    evaluation.write_per_sequence_csv(result, metrics_dir / f"{stem}_per_sequence.csv")
    print(evaluation.format_table(result))


if __name__ == "__main__":
    main()
