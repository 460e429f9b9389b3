"""The tables run logs its rows as MLflow metrics.

That an ablation is comparable in the MLflow UI (each evaluation's scores on the training run it
scored, beside its params) is shown on the real `dvc repro` + `dvc exp run -S tgd.groups=5` of
tests/test_pipeline_dvc.py, `test_mlflow_holds_training_runs`.
"""

from __future__ import annotations


def test_tables_run_logs_its_rows_as_metrics(tmp_path):
    """`table1/<row>/<metric>` metrics on the tables run (reports' rows, from the tables stage's inputs)."""
    import mlflow

    from pipeline.reporting.tables import Comparison, MeasuredRow
    from pipeline.steps.tables import row_metrics

    comparison = Comparison(
        name="table1",
        title="Table 1",
        measured_context="synthetic val",
        columns=(),
        metrics=("HOTA", "MOTA"),
        measured=[
            MeasuredRow("MOTR (baseline)", {}, {"HOTA": 30.5, "MOTA": 20.0}),
            MeasuredRow("MOTRv3", {}, {"HOTA": 35.25, "MOTA": None}),
        ],
        paper=None,
    )
    metrics = row_metrics(comparison)
    assert metrics == {
        "table1/MOTR_baseline/HOTA": 30.5,
        "table1/MOTR_baseline/MOTA": 20.0,
        "table1/MOTRv3/HOTA": 35.25,
    }
    from pipeline.mlflow_utils import setup_experiment

    setup_experiment("tables", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics)  # names MLflow accepts
    assert mlflow.get_run(run.info.run_id).data.metrics == metrics
