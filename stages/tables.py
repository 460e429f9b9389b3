"""Stage `tables`: Table 1, Table 6, Fig. 2 and Fig. 6 under reports/, and the same in an MLflow run.

Reads `metrics/{motr,motrv3}.json` (+ `metrics/detector.json`, computed here from
`data/pseudo_labels/` when no stage wrote it), `results/<method>/<split>/fps.json` and
`models/<method>/assignment_stats.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.params import add_params_arguments, params_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.tables", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument(
        "--root", default=".", help="directory holding metrics/, results/, models/ (default: .)"
    )
    parser.add_argument("--out", default=None, help="reports directory (default: <root>/reports)")
    parser.add_argument("--no-mlflow", action="store_true", help="write the files only")
    args = parser.parse_args(argv)
    params = params_from_args(args)

    from pipeline.reports import ReportError, build_tables

    root = Path(args.root)
    try:
        written = build_tables(
            params, root=root, out_dir=Path(args.out) if args.out else None, mlflow=not args.no_mlflow
        )
    except ReportError as error:
        sys.exit(f"error: {error}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
