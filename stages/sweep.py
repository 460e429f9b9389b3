"""Stage `sweep`: one ablation table of the paper (3, 4 or 5) as a Ray Tune grid of train → track → evaluate.

Writes reports/table<N>.{md,csv} (measured rows beside the paper's reported rows) and logs one MLflow
parent run `table<N>` with a child run per (row, seed). Example: `python -m stages.sweep --table 3`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.sweep", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", type=int, choices=(3, 4, 5), help="which ablation table")
    which.add_argument(
        "--study",
        choices=("strategies",),
        help="a study that is not a paper table: `strategies` runs each reading of RFS / PLD / TGD on "
        "its own (pipeline.studies.study.STRATEGY_STUDY) and writes reports/strategies.md",
    )
    parser.add_argument(
        "--row",
        action="append",
        dest="study_rows",
        metavar="LABEL[=key=value,...]",
        help="with --study, run only these rows (repeatable): a label of the study, or LABEL=overrides "
        "on top of every strategy off",
    )
    add_params_arguments(parser)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seeds per row (default: sweep.seeds)"
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=None, help="1-based rows to run (default: all)"
    )
    parser.add_argument(
        "--runner",
        default=None,
        help="module:function a trial calls (default: pipeline.studies.sweep:train_track_evaluate, the real stages)",
    )
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console(f"table{args.table}" if args.table else args.study, args.verbose):
        _run(args, params)


def _run(args: argparse.Namespace, params) -> None:
    from pipeline.studies.study import STRATEGY_STUDY, parse_row, run_study
    from pipeline.studies.sweep import DEFAULT_RUNNER, SweepError, run_table

    common = dict(
        params_file=args.params,
        base_overrides=args.overrides,
        seeds=args.seeds,
        runner=args.runner or DEFAULT_RUNNER,
    )
    try:
        if args.table:
            outcome, written = run_table(args.table, params, only_rows=args.rows, **common)
        else:
            rows = [parse_row(spec) for spec in args.study_rows or STRATEGY_STUDY]
            outcome, written = run_study(args.study, rows, params, **common)
    except SweepError as error:
        sys.exit(f"error: {error}")
    for path in written:
        say(str(path))
    say(f"MLflow parent run: {outcome.parent_run_id}")


if __name__ == "__main__":
    main()
