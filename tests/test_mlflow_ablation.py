"""An ablation is comparable in the MLflow UI: each evaluation lands on the run of the training it scored.

Two tiny MOTRv3 variants (tgd.groups = 4 and 5) are trained (real Ray Train on a local Ray,
real MLflow sqlite store), tracked and evaluated by the track and evaluate stages; then
`mlflow.search_runs` must return both training runs with HOTA (and the other scores) beside
their differing `tgd.groups`, as MLflow's Compare shows them. The tables run logs its rows as metrics.
"""

from __future__ import annotations

import json

import pytest

from pipeline.params import load_params
from pipeline.paths import REPO_ROOT
from tests.test_train import TINY, make_data

pytestmark = pytest.mark.slow

SETTINGS = [
    *TINY,
    "train.workers=1",
    "train.batch_size=1",
    "train.epochs=1",
    "train.max_steps_per_epoch=1",
    "train.validate_every_epochs=0",
    "pld.enabled=false",
    "tgd.enabled=true",
    "data.eval_size=96",
    "data.eval_max_size=160",
    "track.cpus_per_worker=1",
    "track.device=cpu",
]


@pytest.fixture(scope="module")
def local_ray():
    from pipeline.ray_utils import init_ray

    ray = init_ray(num_cpus=2)
    yield ray
    ray.shutdown()  # only the instance this module started


def test_each_variant_carries_its_scores_beside_its_params(tmp_path, local_ray, monkeypatch):
    import mlflow

    from pipeline.steps.train import run as train
    from stages.evaluate import main as evaluate_main
    from stages.track import main as track_main

    monkeypatch.setenv("MOTRV3_LOG_DIR", str(tmp_path / "logs"))
    clips = make_data(tmp_path, frames=4)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = [*SETTINGS, f"dataset.root={tmp_path / 'raw'}", f"mlflow.tracking_uri={uri}"]
    base.append(f"train.storage_path={tmp_path / 'ray'}")
    run_ids = {}
    for groups in (4, 5):
        overrides = [*base, f"tgd.groups={groups}"]
        params = load_params(REPO_ROOT / "params.yaml", overrides)
        as_stage = ["--params", str(REPO_ROOT / "params.yaml")]
        for item in overrides:
            as_stage += ["--set", item]
        models = tmp_path / f"models_{groups}" / "motrv3"
        metrics = train(params, "motrv3", models, clips_dir=clips, progress=False)
        run_ids[groups] = metrics["mlflow_run_id"]
        results = tmp_path / f"results_{groups}"
        common = [*as_stage, "--method", "motrv3", "--clips-dir", str(clips)]
        track_main([*common, "--checkpoint", str(models / "checkpoint.pt"), "--out", str(results)])
        assert json.loads((results / "fps.json").read_text())["training"]["mlflow_run_id"] == run_ids[groups]
        evaluate_main(
            [*common, "--results", str(results), "--metrics-dir", str(tmp_path / f"metrics_{groups}")]
        )

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(
        experiment_names=[params.mlflow.experiment], filter_string="tags.method = 'motrv3'"
    )
    assert set(runs["run_id"]) == set(run_ids.values())
    by_groups = {row["params.tgd.groups"]: row for _, row in runs.iterrows()}
    assert set(by_groups) == {"4", "5"}
    for groups, row in by_groups.items():
        assert row["run_id"] == run_ids[int(groups)]
        scores = json.loads((tmp_path / f"metrics_{groups}" / "motrv3.json").read_text())
        for key in ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS", "FPS"):
            assert row[f"metrics.{key}"] == pytest.approx(scores[key]), key
        assert 0.0 <= row["metrics.HOTA"] <= 100.0 and row["metrics.FPS"] > 0
        assert "metrics.train/loss" in row.index  # the training's own curves stay on the same run


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
