"""Stage `track`: run a trained checkpoint over every sequence of a split → MOTChallenge results + fps.json.

Reads `data/clips/<split>/` and `models/<method>/checkpoint.pt`; writes
`results/<method>/<split>/<seq>.txt` and `fps.json` (the folder is replaced atomically): the
steady-state FPS, the first frame's warm-up apart, and the training run behind the checkpoint
(its MLflow run id, where the evaluate stage logs the scores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import CLIPS_DIR, results_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.track", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--method", required=True, help="model name under models/ (e.g. motr, motrv3)")
    parser.add_argument("--split", help="split under data/clips/ (default: dataset.eval_split)")
    parser.add_argument(
        "--checkpoint", help="checkpoint (default: track.checkpoint, else models/<method>/checkpoint.pt)"
    )
    parser.add_argument(
        "--clips", default=str(CLIPS_DIR), help="converted datasets folder (default: %(default)s)"
    )
    parser.add_argument("--out", help="results folder (default: results/<method>/<split>)")
    parser.add_argument("--no-progress", action="store_true", help="no live bar: one line per sequence")
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)

    from pipeline.steps import track

    split = args.split or params.dataset.eval_split
    checkpoint = Path(args.checkpoint) if args.checkpoint else track.default_checkpoint(params, args.method)
    dataset_dir = Path(args.clips) / split
    if not checkpoint.is_file():
        sys.exit(f"error: {checkpoint}: no such checkpoint (run the train stage, or pass --checkpoint)")
    if not dataset_dir.is_dir():
        sys.exit(f"error: {dataset_dir}: no converted split (run the convert stage)")
    out_dir = Path(args.out) if args.out else results_dir(args.method, split)
    try:
        training = track.training_record(checkpoint)
    except ValueError as error:  # an official checkpoint not imported yet, an unreadable file
        sys.exit(f"error: {error}")
    with stage_console(f"track_{args.method}", args.verbose):
        info = {"method": args.method, "split": split, "training": training}
        summary = track.run(
            params, checkpoint, dataset_dir, out_dir, extra_info=info, progress=not args.no_progress
        )
        say(
            f"{out_dir}: {summary['sequences_count']} sequences, {summary['frames']} frames, "
            f"{summary['fps']:.2f} FPS ({summary['fps_with_io']:.2f} with reading and decoding) on "
            f"{summary['device']}, after a {summary['warmup_seconds']:.1f} s first-frame warm-up"
        )


if __name__ == "__main__":
    main()
