"""The evaluate step: a method's results on a converted split scored by TrackEval (`pipeline.evaluation`).

A labelled split gives `metrics/<stem>.json` (flat, percentages, plus FPS from the track step's
fps.json) and `metrics/<stem>_per_sequence.csv`; a split without labels (test) gives a submission
archive. `main` is `motrv3 evaluate`: any tracker's MOTChallenge files against any ground truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.evaluation.benchmarks import benchmark_of
from pipeline.evaluation.split import score_split
from pipeline.evaluation.submission import make_submission
from pipeline.evaluation.trackeval_runner import (
    HEADLINE_KEYS,
    Evaluation,
    EvaluationError,
    discover_sequences,
    evaluate_folder,
    format_table,
    has_labels,
    write_metrics_json,
    write_per_sequence_csv,
)
from pipeline.formats.errors import DataError
from pipeline.params import Params
from pipeline.paths import METRICS_DIR

__all__ = ["HEADLINE_KEYS", "EvaluationError", "benchmark_of", "format_table", "main", "run"]


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


def main(argv: list[str] | None = None) -> None:
    """`motrv3 evaluate --gt DIR --results DIR`: score any tracker's MOTChallenge result files."""
    parser = argparse.ArgumentParser(
        prog="motrv3 evaluate",
        description="Score MOTChallenge result files (RESULTS/<seq>.txt) against MOTChallenge-layout ground "
        "truth (GT/<seq>/{seqinfo.ini,gt/gt.txt}) with TrackEval; ground truth without labels (a test "
        "split) gets a submission archive instead.",
    )
    parser.add_argument(
        "--gt", required=True, type=Path, help="ground-truth folder, one sub-folder per sequence"
    )
    parser.add_argument("--results", required=True, type=Path, help="folder of <seq>.txt result files")
    parser.add_argument(
        "--benchmark",
        default="synthetic",
        help="MOT17, MOT16, MOT20 (distractor preprocessing), DanceTrack, synthetic, custom (class 1 only); "
        "default: %(default)s",
    )
    parser.add_argument("--json", type=Path, help="write the flat metrics JSON here")
    parser.add_argument("--csv", type=Path, help="write the per-sequence CSV here")
    parser.add_argument(
        "--submission", type=Path, help="archive path for unlabelled ground truth (default: RESULTS.zip)"
    )
    args = parser.parse_args(argv)
    try:
        sequences = discover_sequences(args.gt)
        if not has_labels(sequences):
            archive = args.submission or args.results.with_suffix(".zip")
            names = make_submission(args.results, sequences, args.benchmark, archive)
            print(f"no labels in {args.gt}: wrote submission archive {archive} ({len(names)} files)")
            return
        evaluation = evaluate_folder(args.gt, args.results, args.benchmark)
    except (DataError, FileNotFoundError, ValueError, EvaluationError) as error:
        sys.exit(f"error: {error}")
    if args.json:
        write_metrics_json(evaluation, args.json)
    if args.csv:
        write_per_sequence_csv(evaluation, args.csv)
    print(format_table(evaluation))


if __name__ == "__main__":
    main()
