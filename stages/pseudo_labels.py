"""Stage `pseudo_labels`: offline detections for pseudo label distillation (PLD, §3.3) → data/pseudo_labels/<split>/.

Sources are `pld.sources` (detector, detfile:<name>, torchvision:<name>, gt; see docs/pseudo_labels.md);
boxes below `pld.threshold` are dropped. Also writes metrics/pseudo_labels.json and
metrics/pseudo_labels_scores.png.
"""

from __future__ import annotations

from pipeline.console import say, stage_console
from pipeline.entry import add_no_progress, add_split, command_parser, params_from_args, user_errors


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.pseudo_labels", __doc__)
    add_split(parser, "dataset.train_split")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("pseudo_labels", args.verbose):
        from pipeline.formats.errors import DataError
        from pipeline.steps import pseudo_labels

        with user_errors(DataError, ValueError, FileNotFoundError):
            manifest = pseudo_labels.run(params, split=args.split, progress=not args.no_progress)
        counts = ", ".join(f"{name}: {entry['boxes']} boxes" for name, entry in manifest["sources"].items())
        say(f"pseudo labels for {manifest['split']}: {counts}")


if __name__ == "__main__":
    main()
