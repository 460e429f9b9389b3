"""Stage `train`: MOTR (baseline) or MOTRv3 with Ray Train → models/<method>/{checkpoint.pt,metrics.json}.

`--method motr` trains the baseline (RFS, PLD, TGD off); `--method motrv3` uses the rfs/pld/tgd
sections as configured. Re-running an unchanged config resumes from its last checkpoint
(docs/training.md).
"""

from __future__ import annotations

from pipeline.steps.train.driver import stage_main, stage_parser


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("python -m stages.train", __doc__.splitlines()[0], ("motr", "motrv3"))
    args = parser.parse_args(argv)
    stage_main(args, args.method)


if __name__ == "__main__":
    main()
