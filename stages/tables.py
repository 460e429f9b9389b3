"""Stage `tables`: Table 1, Table 6, Fig. 2 and Fig. 6 under reports/, and the same in an MLflow run.

Reads `metrics/{motr,motrv3}.json`, `data/pseudo_labels/` (scored into `metrics/detector.json`), `results/<method>/<split>/fps.json` and
`models/<method>/assignment_stats.json`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.console import say, stage_console
from pipeline.entry import command_parser, params_from_args, user_errors


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m stages.tables", __doc__)
    parser.add_argument(
        "--root", default=".", help="directory holding metrics/, results/, models/ (default: .)"
    )
    parser.add_argument("--out", default=None, help="reports directory (default: <root>/reports)")
    parser.add_argument("--no-mlflow", action="store_true", help="write the files only")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    with stage_console("tables", args.verbose):
        from pipeline.reporting.tables import ReportError
        from pipeline.steps import tables

        out_dir = Path(args.out) if args.out else None
        with user_errors(ReportError):
            written = tables.run(params, root=Path(args.root), out_dir=out_dir, log_mlflow=not args.no_mlflow)
        reports = [str(path) for path in written if path.suffix == ".md"]
        figures = [path for path in written if path.suffix == ".png"]
        say(
            f"wrote {', '.join(reports)} (+ CSVs), {len(figures)} figures in {figures[0].parent if figures else '-'}"
        )
        if not args.no_mlflow:
            say(
                f"MLflow: run 'tables' in experiment '{params.mlflow.experiment}', rows as metrics (table1/<row>/HOTA, ...)"
            )


if __name__ == "__main__":
    main()
