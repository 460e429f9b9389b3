"""`motrv3 evaluate --gt DIR --results DIR`: score any tracker's MOTChallenge result files with TrackEval."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.entry import command_parser, user_errors
from pipeline.evaluation.submission import make_submission
from pipeline.evaluation.trackeval_runner import (
    EvaluationError,
    discover_sequences,
    evaluate_folder,
    format_table,
    has_labels,
    write_metrics_json,
    write_per_class_csv,
    write_per_sequence_csv,
)
from pipeline.formats.errors import DataError


def parse_classes(text: str) -> dict[int, str]:
    """`1=pedestrian,3=car` → {1: "pedestrian", 3: "car"} (the order is the label order)."""
    classes = {}
    for item in text.split(","):
        key, sep, name = item.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise argparse.ArgumentTypeError(f"expected id=name pairs like 1=pedestrian,3=car, got {item!r}")
        classes[int(key)] = name.strip()
    return classes


def main(argv: list[str] | None = None) -> None:
    """`motrv3 evaluate --gt DIR --results DIR`: score any tracker's MOTChallenge result files."""
    parser = command_parser(
        "motrv3 evaluate",
        "Score MOTChallenge result files (RESULTS/<seq>.txt) against MOTChallenge-layout ground "
        "truth (GT/<seq>/{seqinfo.ini,gt/gt.txt}) with TrackEval; ground truth without labels (a test "
        "split) gets a submission archive instead.",
        params=False,
        console=False,
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
    parser.add_argument(
        "--classes",
        type=parse_classes,
        help="custom data of several classes: gt class id=name pairs, e.g. 1=pedestrian,3=car (result "
        "files then carry the gt class id in column 8); scored per class, plus combined",
    )
    parser.add_argument("--json", type=Path, help="write the flat metrics JSON here")
    parser.add_argument("--csv", type=Path, help="write the per-sequence CSV here")
    parser.add_argument(
        "--submission", type=Path, help="archive path for unlabelled ground truth (default: RESULTS.zip)"
    )
    args = parser.parse_args(argv)
    with user_errors(DataError, FileNotFoundError, ValueError, EvaluationError):
        sequences = discover_sequences(args.gt)
        if not has_labels(sequences):
            archive = args.submission or args.results.with_suffix(".zip")
            names = make_submission(args.results, sequences, args.benchmark, archive)
            print(f"no labels in {args.gt}: wrote submission archive {archive} ({len(names)} files)")
            return
        evaluation = evaluate_folder(args.gt, args.results, args.benchmark, classes=args.classes)
    if args.json:
        write_metrics_json(evaluation, args.json)
    if args.csv:
        write_per_sequence_csv(evaluation, args.csv)
        if evaluation.per_class:
            write_per_class_csv(evaluation, args.csv.with_name(f"{args.csv.stem}_per_class.csv"))
    print(format_table(evaluation))


if __name__ == "__main__":
    main()
