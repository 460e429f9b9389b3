"""Stage `baselines`: ByteTrack / OC-SORT / SORT (the `trackers` package) on our detector's boxes, scored by TrackEval.

Reads `data/clips/<split>/` and the detector checkpoint (`pseudo_labels.detector_checkpoint`);
writes `results/<tracker>/<split>/<seq>.txt` (+ tracker.json), `metrics/<tracker>.json` and
`metrics/<tracker>_per_sequence.csv` for each of `baselines.trackers`, and `metrics/detector.json`
(the detector's AP50, precision/recall and TrackEval DetA/MODA on the same split).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.console import say, stage_console
from pipeline.entry import (
    add_clips_dir,
    add_metrics_dir,
    add_no_progress,
    add_split,
    command_parser,
    params_from_args,
    user_errors,
)
from pipeline.paths import RESULTS_DIR


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.baselines", __doc__)
    add_split(parser, "dataset.eval_split")
    parser.add_argument(
        "--checkpoint", help="detector checkpoint (default: pseudo_labels.detector_checkpoint)"
    )
    add_clips_dir(parser)
    parser.add_argument(
        "--results",
        default=str(RESULTS_DIR),
        help="results root, one folder per tracker (default: %(default)s)",
    )
    add_metrics_dir(parser)
    add_no_progress(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("baselines", args.verbose):
        from pipeline.evaluation.trackeval_runner import EvaluationError
        from pipeline.formats.errors import DataError
        from pipeline.reporting.tables import METHOD_LABELS
        from pipeline.steps import baselines

        split = args.split or params.dataset.eval_split
        dataset_dir = Path(args.clips_dir) / split
        if not dataset_dir.is_dir():
            sys.exit(f"error: {dataset_dir}: no converted split (run the convert stage)")
        with user_errors(DataError, FileNotFoundError, ValueError, EvaluationError):
            summary = baselines.run(
                params,
                dataset_dir,
                checkpoint=args.checkpoint,
                split=split,
                results_root=args.results,
                metrics_dir=args.metrics_dir,
                progress=not args.no_progress,
            )
        detector = summary.pop("detector")
        for name, values in summary.items():
            say(f"{METHOD_LABELS[name]:>9}: " + "  ".join(f"{k} {v:.1f}" for k, v in values.items()))
        say(
            f"detector: AP50 {detector['AP50']:.1f}, precision/recall at score ≥ 0.5 "
            f"{detector['precision']:.1f}/{detector['recall']:.1f}, recall at ≥ {detector['det_threshold']:g} "
            f"{detector['recall_at_det_threshold']:.1f} ({split})"
        )


if __name__ == "__main__":
    main()
