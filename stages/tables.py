"""Stage `tables`: Table 1, Table 6, Fig. 2 and Fig. 6 under reports/, and the same in an MLflow run.

Reads `metrics/{motr,motrv3}.json`, `data/pseudo_labels/` (scored into `metrics/detector.json`), `results/<method>/<split>/fps.json` and
`models/<method>/assignment_stats.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.console import add_console_arguments, say, stage_console
from pipeline.params import add_params_arguments, params_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.tables", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument(
        "--root", default=".", help="directory holding metrics/, results/, models/ (default: .)"
    )
    parser.add_argument("--out", default=None, help="reports directory (default: <root>/reports)")
    parser.add_argument("--no-mlflow", action="store_true", help="write the files only")
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("tables", args.verbose):
        _tables(args, params)


def _tables(args: argparse.Namespace, params) -> None:
    from pipeline.reporting.tables import ReportError
    from pipeline.steps import tables

    root = Path(args.root)
    try:
        written = tables.run(
            params, root=root, out_dir=Path(args.out) if args.out else None, log_mlflow=not args.no_mlflow
        )
    except ReportError as error:
        sys.exit(f"error: {error}")
    tables = [str(path) for path in written if path.suffix == ".md"]
    figures = [path for path in written if path.suffix == ".png"]
    say(
        f"wrote {', '.join(tables)} (+ CSVs), {len(figures)} figures in {figures[0].parent if figures else '-'}"
    )
    if not args.no_mlflow:
        say(
            f"MLflow: run 'tables' in experiment '{params.mlflow.experiment}', rows as metrics (table1/<row>/HOTA, ...)"
        )


if __name__ == "__main__":
    main()
