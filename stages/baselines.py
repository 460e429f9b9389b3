"""Stage `baselines`: ByteTrack / OC-SORT / SORT (the `trackers` package) on our detector's boxes, scored by TrackEval.

Reads `data/clips/<split>/` and the detector checkpoint (`pseudo_labels.detector_checkpoint`);
writes `results/<tracker>/<split>/<seq>.txt` (+ tracker.json), `metrics/<tracker>.json` and
`metrics/<tracker>_per_sequence.csv` for each of `baselines.trackers`, and `metrics/detector.json`
(the detector's AP50, precision/recall and TrackEval DetA/MODA on the same split).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import CLIPS_DIR, METRICS_DIR, RESULTS_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.baselines", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--split", help="split under data/clips/ (default: dataset.eval_split)")
    parser.add_argument(
        "--checkpoint", help="detector checkpoint (default: pseudo_labels.detector_checkpoint)"
    )
    parser.add_argument(
        "--clips", default=str(CLIPS_DIR), help="converted datasets folder (default: %(default)s)"
    )
    parser.add_argument(
        "--results",
        default=str(RESULTS_DIR),
        help="results root, one folder per tracker (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-dir", default=str(METRICS_DIR), help="where metrics go (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("baselines", args.verbose):
        _baselines(args, params)


def _baselines(args: argparse.Namespace, params) -> None:
    from pipeline.formats.errors import DataError
    from pipeline.reporting.tables import METHOD_LABELS
    from pipeline.steps import baselines, evaluate

    split = args.split or params.dataset.eval_split
    dataset_dir = Path(args.clips) / split
    if not dataset_dir.is_dir():
        sys.exit(f"error: {dataset_dir}: no converted split (run the convert stage)")
    try:
        summary = baselines.run(
            params,
            dataset_dir,
            checkpoint=args.checkpoint,
            split=split,
            results_root=args.results,
            metrics_dir=args.metrics_dir,
            progress=not args.no_progress,
        )
    except (DataError, FileNotFoundError, ValueError, evaluate.EvaluationError) as error:
        sys.exit(f"error: {error}")
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
