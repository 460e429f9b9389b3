"""Stage `convert`: raw MOTChallenge/CrowdHuman layouts → Parquet clip datasets in data/clips/<split>/."""

from __future__ import annotations

from pipeline.console import say, stage_console
from pipeline.entry import command_parser, params_from_args, user_errors
from pipeline.paths import CLIPS_DIR


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.convert", __doc__)
    parser.add_argument("--out", default=str(CLIPS_DIR), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("convert", args.verbose):
        from pipeline.formats.errors import DataError
        from pipeline.steps.convert import run as convert

        hint = "" if params.dataset.lenient else " (dataset.lenient=true skips and reports bad items instead)"
        with user_errors(DataError, hint=hint):
            manifests = convert(params, args.out)
        for split, manifest in manifests.items():
            totals, skipped = manifest["totals"], manifest["skipped"]
            say(
                f"convert {split}: {totals['sequences']} sequences, {totals['frames']} frames, {totals['objects']} objects, {skipped['total']} skipped {skipped['counts'] or ''}"
            )


if __name__ == "__main__":
    main()
