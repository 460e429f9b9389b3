"""Stage `train`: MOTR (baseline) or MOTRv3 with Ray Train → models/<method>/{checkpoint.pt,metrics.json}.

`--method motr` trains the baseline (RFS, PLD, TGD off); `--method motrv3` uses the rfs/pld/tgd
sections as configured. Re-running an unchanged config resumes from its last checkpoint
(docs/training.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import paths
from pipeline.console import say, stage_console
from pipeline.entry import add_clips_dir, add_no_progress, command_parser, params_from_args, user_errors


def train_parser(prog: str, doc: str, methods: tuple[str, ...] | None) -> argparse.ArgumentParser:
    """The command line of this stage and `stages.train_detector` (`methods` None: no --method)."""
    parser = command_parser(prog, doc)
    if methods:
        parser.add_argument("--method", choices=methods, required=True, help="what to train")
    parser.add_argument("--output-dir", default=None, help="default: models/<method>")
    add_clips_dir(parser)
    parser.add_argument(
        "--pseudo-labels-dir", default=str(paths.PSEUDO_LABELS_DIR), help="PLD labels (default: %(default)s)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard this config's checkpoints and start over"
    )
    add_no_progress(parser, "no live progress bar: one plain line per epoch")
    return parser


def train(args: argparse.Namespace, method: str) -> dict:
    """Train with a clean console (`pipeline.console`: Ray's output goes to logs/train_<method>.log)."""
    params = params_from_args(args)
    with stage_console(f"train_{method}", args.verbose):
        from pipeline.steps import train

        with user_errors(train.TrainingError):
            metrics = train.run(
                params,
                method,
                args.output_dir,
                clips_dir=args.clips_dir,
                pseudo_labels_dir=args.pseudo_labels_dir,
                fresh=args.fresh,
                progress=not args.no_progress,
            )
        loss = metrics["final_losses"].get("loss")
        resumed = metrics["resumed_from_step"]
        say(
            f"{method}: {metrics['epochs']} epochs, {metrics['global_steps']} steps, final loss "
            f"{loss:.3f}, {metrics['clips_per_s']:.2f} clips/s, {metrics['wall_seconds']:.0f} s"
            + (f" (resumed from step {resumed})" if resumed else "")
            + f" → {Path(args.output_dir or paths.MODELS_DIR / method) / 'checkpoint.pt'}"
        )
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = train_parser("python -m stages.train", __doc__, ("motr", "motrv3")).parse_args(argv)
    train(args, args.method)


if __name__ == "__main__":
    main()
