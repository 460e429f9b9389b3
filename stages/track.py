"""Stage `track`: run a trained checkpoint over every sequence of a split → MOTChallenge results + fps.json.

Reads `data/clips/<split>/` and `models/<method>/checkpoint.pt`; writes
`results/<method>/<split>/<seq>.txt` and `fps.json` (the folder is replaced atomically): the
steady-state FPS, the first frame's warm-up apart, and the training run behind the checkpoint
(its MLflow run id, where the evaluate stage logs the scores).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.console import say, stage_console
from pipeline.entry import (
    add_clips_dir,
    add_no_progress,
    add_split,
    command_parser,
    params_from_args,
    user_errors,
)
from pipeline.paths import results_dir


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.track", __doc__)
    parser.add_argument("--method", required=True, help="model name under models/ (e.g. motr, motrv3)")
    add_split(parser, "dataset.eval_split")
    parser.add_argument(
        "--checkpoint", help="checkpoint (default: track.checkpoint, else models/<method>/checkpoint.pt)"
    )
    add_clips_dir(parser)
    parser.add_argument("--out", help="results folder (default: results/<method>/<split>)")
    add_no_progress(parser, "no live bar: one line per sequence")
    args = parser.parse_args(argv)
    params = params_from_args(args)

    from pipeline.steps import track

    split = args.split or params.dataset.eval_split
    checkpoint = Path(args.checkpoint) if args.checkpoint else track.default_checkpoint(params, args.method)
    dataset_dir = Path(args.clips_dir) / split
    if not checkpoint.is_file():
        sys.exit(f"error: {checkpoint}: no such checkpoint (run the train stage, or pass --checkpoint)")
    if not dataset_dir.is_dir():
        sys.exit(f"error: {dataset_dir}: no converted split (run the convert stage)")
    out_dir = Path(args.out) if args.out else results_dir(args.method, split)
    with user_errors(ValueError):  # an official checkpoint not imported yet, an unreadable file
        training = track.training_record(checkpoint)
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
