"""Stage `sweep`: one ablation table of the paper (3, 4 or 5) as a Ray Tune grid of train → track → evaluate.

Writes reports/table<N>.{md,csv} (measured rows beside the paper's reported rows) and logs one MLflow
parent run `table<N>` with a child run per (row, seed). Example: `python -m stages.sweep --table 3`.
"""

from __future__ import annotations

import argparse

from pipeline.console import say, stage_console
from pipeline.entry import command_parser, params_from_args, user_errors


def add_trial_arguments(parser: argparse.ArgumentParser, per: str) -> None:
    """What every sweep-shaped stage takes (this one and `stages.scaling`): seeds and the trial runner."""
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help=f"seeds per {per} (default: sweep.seeds)"
    )
    parser.add_argument(
        "--runner",
        default=None,
        help="module:function a trial calls (default: pipeline.studies.sweep:train_track_evaluate, the real stages)",
    )


def run_and_report(name: str, args: argparse.Namespace, start) -> None:
    """`start(common)` (a study driver given the shared keywords) inside stage `name`'s console."""
    params = params_from_args(args)
    with stage_console(name, args.verbose):
        from pipeline.studies.sweep import DEFAULT_RUNNER, SweepError

        common = dict(
            params_file=args.params,
            base_overrides=args.overrides,
            seeds=args.seeds,
            runner=args.runner or DEFAULT_RUNNER,
        )
        with user_errors(SweepError):
            outcome, written = start(params, common)
        for path in written:
            say(str(path))
        say(f"MLflow parent run: {outcome.parent_run_id}")


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.sweep", __doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", type=int, choices=(3, 4, 5), help="which ablation table")
    which.add_argument(
        "--study",
        choices=("strategies",),
        help="a study that is not a paper table: `strategies` runs rows of "
        "pipeline.studies.study.STRATEGY_STUDY (without --row its DEFAULT_ROWS: Table 3's six rows "
        "at the profile's readings) and writes reports/strategies.md",
    )
    parser.add_argument(
        "--row",
        action="append",
        dest="study_rows",
        metavar="LABEL[=key=value,...]",
        help="with --study, run only these rows (repeatable): a label of the study, or LABEL=overrides "
        "on top of every strategy off",
    )
    add_trial_arguments(parser, "row")
    parser.add_argument(
        "--rows", type=int, nargs="+", default=None, help="1-based rows to run (default: all)"
    )
    args = parser.parse_args(argv)

    def start(params, common):
        from pipeline.studies.study import DEFAULT_ROWS, parse_row, run_study
        from pipeline.studies.sweep import run_table

        if args.table:
            return run_table(args.table, params, only_rows=args.rows, **common)
        rows = [parse_row(spec) for spec in args.study_rows or DEFAULT_ROWS]
        return run_study(args.study, rows, params, **common)

    run_and_report(f"table{args.table}" if args.table else args.study, args, start)


if __name__ == "__main__":
    main()
