"""Ablation sweeps: the paper's rows, and a real Ray Tune grid with nested MLflow runs and the report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.params import load_params
from pipeline.studies.sweep import SweepError, table3_rows, table4_rows, table5_rows, trial_key

REPO = Path(__file__).resolve().parents[1]


def test_table3_rows_are_the_papers_on_off_grid():
    rows = table3_rows()
    assert [(r.settings["rfs"], r.settings["pld"], r.settings["tgd"]) for r in rows] == [
        (False, False, False),
        (True, False, False),
        (False, True, False),
        (False, False, True),
        (True, True, False),
        (True, True, True),
    ]
    assert rows[0].overrides == ("rfs.enabled=false", "pld.enabled=false", "tgd.enabled=false")
    params = load_params(REPO / "params.yaml", list(rows[3].overrides))
    assert (params.rfs.enabled, params.pld.enabled, params.tgd.enabled) == (False, False, True)


def test_table4_and_5_rows_translate_to_params():
    rows = table4_rows(["detector", "gt", "detector+detfile"])
    params = load_params(REPO / "params.yaml", list(rows[2].overrides))
    assert params.pld.sources == ["detector", "detfile"] and params.pld.combine == "parallel"
    assert not params.tgd.enabled and params.rfs.enabled and params.pld.enabled
    with pytest.raises(SweepError, match="empty source"):
        table4_rows(["+"])
    rows5 = table5_rows()
    assert [(r.settings["groups"], r.settings["noise"]) for r in rows5] == [
        (None, False), (3, False), (4, False), (5, False), (4, True)
    ]  # fmt: skip
    params = load_params(REPO / "params.yaml", list(rows5[1].overrides))
    assert (params.tgd.enabled, params.tgd.groups, params.tgd.noise) == (True, 3, False)
    assert not load_params(REPO / "params.yaml", list(rows5[0].overrides)).tgd.enabled


def test_trial_key_changes_with_the_config():
    a = load_params(REPO / "params.yaml", ["seed=0"])
    b = load_params(REPO / "params.yaml", ["seed=1"])
    assert trial_key("1 Base", a) == trial_key("1 Base", a)
    assert trial_key("1 Base", a) != trial_key("1 Base", b)
    assert trial_key("1 Base", a).startswith("1-base-")


def test_only_pld_rows_read_the_pseudo_labels(tmp_path):
    """A trial's inputs are what it reads: a new pseudo-label source must not retrain the baseline."""
    from pipeline.studies.sweep import trial_inputs

    base = load_params(REPO / "params.yaml", ["pld.enabled=false"])
    pld = load_params(REPO / "params.yaml", ["pld.enabled=true"])
    store = tmp_path / "data" / "pseudo_labels" / base.dataset.train_split
    assert store not in trial_inputs(base, tmp_path, "val")
    assert store in trial_inputs(pld, tmp_path, "val")
    store.mkdir(parents=True)
    before = trial_key("1 Base", base, trial_inputs(base, tmp_path, "val"))
    (store / "pseudo_labels.parquet").write_bytes(b"a new source")
    assert trial_key("1 Base", base, trial_inputs(base, tmp_path, "val")) == before


def tiny_runner(params, method, out_dir, root, split):
    """A stand-in for train → track → evaluate whose metrics follow the switched-on strategies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    score = 40.0 + 10 * params.rfs.enabled + 5 * params.pld.enabled + 3 * params.tgd.enabled + params.seed
    return {
        "HOTA": score,
        "AssA": score - 5,
        "DetA": score + 5,
        "MOTA": 70.0,
        "IDF1": 60.0,
        "IDS": 100 + params.seed,
    }


@pytest.mark.slow
def test_sweep_ray_keeps_room_for_a_trainer_as_wide_as_the_machine(monkeypatch):
    """The cpu profile trains on every core (2 workers × 1 CPU on 2 cores); with the waiting trial's
    0.01 CPU on top, a Ray instance of exactly the machine's CPUs never started the trainer."""
    import os

    from pipeline.studies.sweep import trial_cluster_cpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    params = load_params(REPO / "params.yaml")
    cores = len(os.sched_getaffinity(0))
    trainer = params.train.workers * params.train.cpus_per_worker
    cpus = trial_cluster_cpus(params)
    assert cpus == cores + 1 and trainer + params.sweep.trial_cpus <= cpus
    params.ray.num_cpus = 3
    assert trial_cluster_cpus(params) == 3  # an explicit count is used as is
    params.ray.num_cpus, params.ray.address = None, "127.0.0.1:6379"
    assert trial_cluster_cpus(params) is None  # a cluster sizes itself


def test_table3_sweep_runs_tune_trials_with_nested_mlflow_runs(tmp_path: Path):
    import mlflow

    from pipeline.studies.sweep import run_table

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        f"mlflow.tracking_uri={uri}",
        f"sweep.storage_path={tmp_path / 'ray_results'}",
        "ray.num_cpus=2",
        "sweep.birth_thresholds=[]",  # the stand-in runner trains no model to track again
    ]
    params = load_params(REPO / "params.yaml", overrides)
    try:
        outcome, written = run_table(
            3,
            params,
            params_file=REPO / "params.yaml",
            base_overrides=overrides,
            seeds=[0],
            runner="tests.test_sweep:tiny_runner",
            root=tmp_path,
            only_rows=[1, 6],
        )
    finally:
        import ray

        ray.shutdown()

    # The measured rows are the two trials' metrics; the paper's six rows are a separate section.
    assert [(r.label, r.metrics["HOTA"]) for r in outcome.rows] == [("1 Base", 40.0), ("6 MOTRv3", 58.0)]
    md = (tmp_path / "reports" / "table3.md").read_text()
    measured, paper = md.split("## Reported in the paper")
    assert "| 6 MOTRv3 | ✓ | ✓ | ✓ | 58.0 | 53.0 | 63.0 | 70.0 | 60.0 | 100 |" in measured
    assert "63.9" in paper and "63.9" not in measured
    with open(tmp_path / "reports" / "table3.csv") as handle:
        records = list(csv.DictReader(handle))
    assert [r["section"] for r in records] == ["measured"] * 2 + ["reported"] * 6
    assert written == [tmp_path / "reports" / "table3.md", tmp_path / "reports" / "table3.csv"]

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.run_name == "table3" and parent.info.status == "FINISHED"
    assert parent.data.metrics["6-motrv3/HOTA"] == 58.0
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["1 Base · seed 0", "6 MOTRv3 · seed 0"]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert sorted(c.data.metrics["HOTA"] for c in children) == [40.0, 58.0]
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id, "tables")}
    assert {"tables/table3.json", "tables/table3.md"} <= artifacts
