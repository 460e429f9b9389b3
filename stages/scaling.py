"""Stage `scaling`: the backbone scaling study (Fig. 4), baseline and MOTRv3 per backbone, via Ray Tune.

Writes reports/scaling.{md,csv}, reports/figures/fig4_scaling.png and reports/plots/fig4_scaling.csv,
and one MLflow parent run `scaling` with a child run per (method, backbone, seed). The `cpu` profile
sets `scaling.backbones` to small models instead of the paper's ResNet-50/ConvNeXt-T/S/B.
"""

from __future__ import annotations

from pipeline.entry import command_parser
from stages.sweep import add_trial_arguments, run_and_report


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.scaling", __doc__)
    add_trial_arguments(parser, "point")
    args = parser.parse_args(argv)

    def start(params, common):
        from pipeline.studies.scaling import run_scaling

        return run_scaling(params, **common)

    run_and_report("scaling", args, start)


if __name__ == "__main__":
    main()
