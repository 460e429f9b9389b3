"""Stage `generate`: write the synthetic benchmark (MOTChallenge layout) to data/raw/synthetic."""

from __future__ import annotations

import argparse

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import RAW_SYNTHETIC_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.generate", description=__doc__)
    add_params_arguments(parser)
    parser.add_argument("--out", default=str(RAW_SYNTHETIC_DIR), help="output folder (default: %(default)s)")
    add_console_arguments(parser)
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
