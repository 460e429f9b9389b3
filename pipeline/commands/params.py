"""`motrv3 params`: validate params.yaml and print the effective values (profile and `--set` applied)."""

from __future__ import annotations

import json

from pipeline.entry import command_parser, params_from_args


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("motrv3 params", __doc__, console=False)
    args = parser.parse_args(argv)
    print(json.dumps(params_from_args(args).as_dict(), indent=2))


if __name__ == "__main__":
    main()
