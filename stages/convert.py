"""Stage `convert`: raw MOTChallenge/CrowdHuman layouts → Parquet clip datasets in data/clips/<split>/."""

from __future__ import annotations

import argparse
import sys

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import CLIPS_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.convert", description=__doc__)
    add_params_arguments(parser)
    parser.add_argument("--out", default=str(CLIPS_DIR), help="output folder (default: %(default)s)")
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("convert", args.verbose):
        _convert(args, params)


def _convert(args: argparse.Namespace, params) -> None:
    from pipeline.formats.errors import DataError
    from pipeline.steps.convert import run as convert

    try:
        manifests = convert(params, args.out)
    except DataError as error:
        hint = "" if params.dataset.lenient else " (dataset.lenient=true skips and reports bad items instead)"
        sys.exit(f"error: {error}{hint}")
    for split, manifest in manifests.items():
        totals, skipped = manifest["totals"], manifest["skipped"]
        say(
            f"convert {split}: {totals['sequences']} sequences, {totals['frames']} frames, {totals['objects']} objects, {skipped['total']} skipped {skipped['counts'] or ''}"
        )


if __name__ == "__main__":
    main()
