"""Stage `scaling`: the backbone scaling study (Fig. 4), baseline and MOTRv3 per backbone, via Ray Tune.

Writes reports/scaling.{md,csv}, reports/figures/fig4_scaling.png and reports/plots/fig4_scaling.csv,
and one MLflow parent run `scaling` with a child run per (method, backbone, seed). The `cpu` profile
scales over `scaling.cpu_backbones` (small models) instead of the paper's ResNet-50/ConvNeXt-T/S/B.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.scaling", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seeds per point (default: sweep.seeds)"
    )
    parser.add_argument(
        "--runner",
        default=None,
        help="module:function a trial calls (default: pipeline.studies.sweep:train_track_evaluate, the real stages)",
    )
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console(f"table{args.table}" if hasattr(args, "table") else "scaling", args.verbose):
        _run(args, params)


def _run(args: argparse.Namespace, params) -> None:
    from pipeline.studies.scaling import run_scaling
    from pipeline.studies.sweep import DEFAULT_RUNNER, SweepError

    try:
        outcome, written = run_scaling(
            params,
            params_file=args.params,
            base_overrides=args.overrides,
            seeds=args.seeds,
            runner=args.runner or DEFAULT_RUNNER,
        )
    except SweepError as error:
        sys.exit(f"error: {error}")
    for path in written:
        say(str(path))
    say(f"MLflow parent run: {outcome.parent_run_id}")


if __name__ == "__main__":
    main()
