"""Stage `pseudo_labels`: offline detections for pseudo label distillation (PLD, §3.3) → data/pseudo_labels/<split>/.

Sources are `pld.sources` (detector, detfile:<name>, torchvision:<name>, gt; see docs/pseudo_labels.md);
boxes below `pld.threshold` are dropped. Also writes metrics/pseudo_labels.json and
metrics/pseudo_labels_scores.png.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.pseudo_labels", description=__doc__.splitlines()[0]
    )
    add_params_arguments(parser)
    parser.add_argument(
        "--split", default=None, help="converted split to label (default: dataset.train_split)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("pseudo_labels", args.verbose):
        _pseudo_labels(args, params)


def _pseudo_labels(args: argparse.Namespace, params) -> None:
    from pipeline.formats.errors import DataError
    from pipeline.steps import pseudo_labels

    try:
        manifest = pseudo_labels.run(params, split=args.split, progress=not args.no_progress)
    except (DataError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    counts = ", ".join(f"{name}: {entry['boxes']} boxes" for name, entry in manifest["sources"].items())
    say(f"pseudo labels for {manifest['split']}: {counts}")


if __name__ == "__main__":
    main()
