"""Stage `generate`: write the synthetic benchmark (MOTChallenge layout) to data/raw/synthetic."""

from __future__ import annotations

from pipeline.console import say, stage_console
from pipeline.entry import command_parser, params_from_args
from pipeline.paths import RAW_SYNTHETIC_DIR


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.generate", __doc__)
    parser.add_argument("--out", default=str(RAW_SYNTHETIC_DIR), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    from pipeline.data.synthetic import generate

    with stage_console("generate", args.verbose):
        names = generate(params.synthetic, args.out)
        say(
            f"generate: {sum(map(len, names.values()))} sequences in {args.out} ({', '.join(f'{k}: {len(v)}' for k, v in names.items())})"
        )


if __name__ == "__main__":
    main()
