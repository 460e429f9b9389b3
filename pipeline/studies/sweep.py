"""Ablations with Ray Tune (MOTRv3 §4.4, Tables 3-5): every row a trial of train → track → evaluate.

A table is a grid over its rows × `sweep.seeds`. Each trial loads the params with the row's
overrides (e.g. `rfs.enabled=false`), trains with Ray Train (`pipeline.steps.train.run`, a
`TorchTrainer` inside the trial: the trial itself holds only `sweep.trial_cpus`), tracks the
evaluation split (`pipeline.steps.track.run`) and scores it with TrackEval
(`pipeline.steps.evaluate.run`): the same step functions the stages call. One MLflow parent run per table, one child run per trial
(created by the trial with the parent's id, ended by the trial), the rendered table (measured rows
beside the paper's reported rows) in `reports/table<N>.{md,csv}` and in the parent run.

Resume: a trial whose outputs (`<storage>/<table>/rows/<key>/eval.json`) exist for the same
effective params and input data (`pipeline.identity.work_key`) is not re-run, and training itself resumes from its Ray Train checkpoints.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.identity import work_key
from pipeline.params import DEFAULT_PARAMS_FILE, Params, load_params, switch_overrides
from pipeline.reporting.paper_results import METRICS, reported
from pipeline.reporting.tables import (
    Comparison,
    MeasuredRow,
    aggregate_seeds,
    log_comparison,
    write_comparison,
)
from pipeline.studies.operating_points import points_as_metrics, track_operating_points
from pipeline.studies.rows import SweepRow
from pipeline.studies.trial_outputs import row_slug, rows_dir_of
from pipeline.studies.trial_reports import measured_notes, sweep_figures

DEFAULT_RUNNER = "pipeline.studies.sweep:train_track_evaluate"
EVAL_FILE = "eval.json"


class SweepError(RuntimeError):
    """A sweep that cannot start or whose trials failed."""


def table3_rows() -> list[SweepRow]:
    """Table 3: the paper's six on/off combinations of RFS, PLD and TGD (row 1 = MOTR baseline)."""
    rows = []
    for item in reported(3).rows:
        flags = (item["rfs"], item["pld"], item["tgd"])
        rows.append(
            SweepRow(
                label=item["label"],
                settings={"rfs": flags[0], "pld": flags[1], "tgd": flags[2]},
                overrides=switch_overrides(*flags),
                paper_label=item["label"],
            )
        )
    return rows


def table4_rows(sources: Sequence[str]) -> list[SweepRow]:
    """Table 4: RFS + PLD (TGD off, as the paper's row equal to Table 3 row 5) per pseudo-label source.

    A source `a+b` trains on both sources' labels in parallel (`pld.combine=parallel`).
    """
    rows = []
    for source in sources:
        parts = [s.strip() for s in source.split("+") if s.strip()]
        if not parts:
            raise SweepError(f"sweep.pld_sources: empty source in {list(sources)}")
        overrides = (*switch_overrides(True, True, False), f"pld.sources=[{','.join(parts)}]")
        if len(parts) > 1:
            overrides += ("pld.combine=parallel",)
        label = "parallel (" + " & ".join(parts) + ")" if len(parts) > 1 else parts[0]
        rows.append(SweepRow(label=label, settings={"source": "+".join(parts)}, overrides=overrides))
    return rows


def table5_rows() -> list[SweepRow]:
    """Table 5: RFS + PLD base, then TGD with 3/4/5 groups without noise, and 4 groups with noise.

    "Group Num" goes to `tgd.groups` unchanged: both are Eq. 4's G, which counts the original track
    queries (G − 1 noisy copy groups are added; `motrv3.tgd`)."""
    rows = []
    for item in reported(5).rows:
        groups, noise = item["groups"], item["noise"]
        if groups is None:
            overrides = switch_overrides(True, True, False)
        else:
            overrides = (
                *switch_overrides(True, True, True),
                f"tgd.groups={groups}",
                f"tgd.noise={str(noise).lower()}",
            )
        label = item["label"] if groups is None else f"{item['label']} ({groups})"
        rows.append(SweepRow(label=label, settings={"groups": groups, "noise": noise}, overrides=overrides))
    return rows


def table_rows(table: int, params: Params) -> list[SweepRow]:
    if table == 3:
        return table3_rows()
    if table == 4:
        return table4_rows(params.sweep.pld_sources)
    if table == 5:
        return table5_rows()
    raise SweepError(f"--table: the ablation tables are 3, 4 and 5, got {table}")


# ---------------------------------------------------------------------------------------------
# One trial


def trial_inputs(params: Params, root: Path, split: str) -> list[Path]:
    """The data a trial reads: the training and evaluation splits, the pseudo labels, the init weights."""
    inputs = [root / paths.CLIPS_DIR / params.dataset.train_split, root / paths.CLIPS_DIR / split]
    if params.pld.enabled:  # only PLD reads them: a new pseudo-label source retrains no baseline
        inputs.append(root / paths.PSEUDO_LABELS_DIR / params.dataset.train_split)
    for section in (params.train, params.detector):
        if section.init_checkpoint:
            inputs.append(root / section.init_checkpoint)
    return inputs


def trial_key(label: str, params: Params, inputs: Sequence[Path] = ()) -> str:
    """`<row slug>-<hash>` of the effective params and the input data: a changed config or changed
    data never reuses old outputs."""
    # The grid of birth thresholds only adds scores of the trained model: not part of the trial.
    return work_key(row_slug(label), params, inputs, exclude={"sweep": ["birth_thresholds"]}, digits=10)


def train_track_evaluate(
    params: Params, method: str, out_dir: Path, root: Path, split: str
) -> dict[str, Any]:
    """The real pipeline for one configuration; returns the flat metrics (percentages, IDS a count)."""
    from pipeline.steps import evaluate, track, train

    # Tune runs a trial in its own directory: paths of the pipeline are relative to `root`.
    params = params.model_copy(deep=True)
    if not params.train.storage_path:
        # Keep Ray Train's checkpoints where `train` keeps them, so a row equal to the main
        # pipeline's run (or to another table's row) resumes instead of retraining.
        params.train.storage_path = str(root / paths.MODELS_DIR / ".ray_train")
    for section in (params.train, params.detector):
        if section.init_checkpoint and not Path(section.init_checkpoint).is_absolute():
            section.init_checkpoint = str(root / section.init_checkpoint)
    train_metrics = train.run(
        params,
        method,
        out_dir / "model",
        clips_dir=root / paths.CLIPS_DIR,
        pseudo_labels_dir=root / paths.PSEUDO_LABELS_DIR,
        progress=False,
    )
    dataset_dir = root / paths.CLIPS_DIR / split
    params.track.save_video = False  # a trial keeps only what it scores
    fps = track.run(params, out_dir / "model" / "checkpoint.pt", dataset_dir, out_dir / "results")
    evaluation = evaluate.run(params, out_dir / "results", dataset_dir, out_dir, "metrics")
    return {
        **evaluation.overall,
        "FPS": fps["fps"],
        "train_mlflow_run_id": train_metrics.get("mlflow_run_id"),
    }


def trial_cluster_cpus(params: Params) -> int | None:
    """CPUs of the local Ray instance a sweep starts: the machine's, plus one logical CPU.

    A trial only waits on its TorchTrainer yet holds `sweep.trial_cpus` (Tune needs a non-zero
    bundle), so on exactly the machine's CPUs a trainer as wide as the machine (the cpu profile's
    2 workers × 1 CPU on 2 cores) never starts. The extra logical CPU is room for the waiting
    trials: while their shares add up to less than one CPU, the trainers beside them never hold
    more than the real cores. `ray.num_cpus` or a cluster address is used as is.
    """
    if params.ray.num_cpus is not None or params.ray.address or os.environ.get("RAY_ADDRESS"):
        return params.ray.num_cpus
    return len(os.sched_getaffinity(0)) + 1


def resolve_runner(spec: str) -> Callable[..., dict[str, Any]]:
    """`module:function` → the function (the runner a trial calls)."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise SweepError(f"sweep runner {spec!r}: {error}") from None


def _metric_name(key: str) -> str:
    """TrackEval names such as `HOTA(0)` → `HOTA_0` (MLflow allows word characters, `/ . - :` and space)."""
    return re.sub(r"[^\w/.\- :]", "_", key).strip("_")


def run_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable: one (row, seed). Logs a child MLflow run under the table's run."""
    from mlflow import MlflowClient
    from ray import tune

    row, seed = config["row"], int(config["seed"])
    root = Path(config["root"])
    overrides = [*config["base_overrides"], *row["overrides"], f"seed={seed}"]
    params = load_params(config["params_file"], overrides)
    split = config["split"] or params.dataset.eval_split
    key = trial_key(f"{row['label']}-s{seed}", params, trial_inputs(params, root, split))
    out_dir = Path(config["rows_dir"]) / key
    client = MlflowClient(config["tracking_uri"])
    run = client.create_run(
        config["experiment_id"],
        run_name=f"{row['label']} · seed {seed}",
        tags={
            "mlflow.parentRunId": config["parent_run_id"],
            "sweep": config["name"],
            "row": row["label"],
            "seed": str(seed),
            "trial_dir": str(out_dir),
        },
    )
    run_id = run.info.run_id
    try:
        client.log_batch(
            run_id,
            params=[
                _param(k, v) for k, v in {**row["settings"], "seed": seed, "method": row["method"]}.items()
            ]
            + [_param(f"override.{i}", text) for i, text in enumerate(row["overrides"])],
        )
        cached = out_dir / EVAL_FILE
        if cached.exists():
            metrics = json.loads(cached.read_text())
            client.set_tag(run_id, "resumed", "outputs reused")
        else:
            runner = resolve_runner(config["runner"])
            metrics = runner(params=params, method=row["method"], out_dir=out_dir, root=root, split=split)
            paths.write_text_atomic(cached, json.dumps(metrics, indent=2) + "\n")
        numbers = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if params.sweep.birth_thresholds:  # also added to a reused trial: cheap next to training
            points = track_operating_points(params, out_dir / "model" / "checkpoint.pt",
                                            root / paths.CLIPS_DIR / split, out_dir, params.sweep.birth_thresholds)  # fmt: skip
            numbers.update(points_as_metrics(points))
        if metrics.get("train_mlflow_run_id"):
            client.set_tag(run_id, "train_mlflow_run_id", metrics["train_mlflow_run_id"])
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(_metric_name(k), v, now, 0) for k, v in numbers.items()])
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    result = {**{k: numbers.get(k) for k in METRICS if k in numbers}, "row": row["label"], "seed": seed}
    if "FPS" in numbers:
        result["FPS"] = numbers["FPS"]
    tune.report(result)


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, json.dumps(value) if not isinstance(value, str) else value)


# ---------------------------------------------------------------------------------------------
# The driver


@dataclass
class SweepOutcome:
    name: str
    parent_run_id: str
    rows: list[MeasuredRow]
    trials: list[dict[str, Any]] = field(default_factory=list)


def run_sweep(
    name: str,
    rows: Sequence[SweepRow],
    params: Params,
    *,
    params_file: str | Path = DEFAULT_PARAMS_FILE,
    base_overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    runner: str = DEFAULT_RUNNER,
    root: Path | None = None,
    parent_tags: dict[str, str] | None = None,
) -> SweepOutcome:
    """Run `rows` × `seeds` as a Tune grid (one trial at a time by default) under one MLflow parent run."""
    import mlflow
    from ray import tune

    from pipeline.mlflow_utils import setup_experiment, tracking_uri
    from pipeline.ray_utils import init_ray

    root = Path(root or Path.cwd()).resolve()
    seeds = list(seeds if seeds is not None else params.sweep.seeds)
    if not rows or not seeds:
        raise SweepError(f"sweep {name}: nothing to run ({len(rows)} rows, seeds {seeds})")
    rows_dir = rows_dir_of(params, root, name)
    uri = tracking_uri(params.mlflow.tracking_uri, root)
    # First: a Ray that cannot start leaves no MLflow run.
    init_ray(params.ray.address, trial_cluster_cpus(params))
    # The driver creates the experiment (with its artifact location) before any trial runs.
    experiment_id = setup_experiment(params.mlflow.experiment, uri, root)
    parent = mlflow.MlflowClient(uri).create_run(
        experiment_id,
        run_name=name,
        tags={"sweep": name, "kind": "sweep", "dataset": params.dataset.name, "profile": params.profile,
              **(parent_tags or {})},
    )  # fmt: skip
    parent_id = parent.info.run_id
    space = {
        "row": tune.grid_search([row.as_config() for row in rows]),
        "seed": tune.grid_search(seeds),
        "name": name,
        "root": str(root),
        "params_file": str(Path(params_file).resolve()),
        "base_overrides": [*base_overrides, f"mlflow.experiment={params.mlflow.experiment}"],
        "split": params.sweep.split,
        "runner": runner,
        "rows_dir": str(rows_dir),
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "parent_run_id": parent_id,
    }
    client = mlflow.MlflowClient(uri)
    try:
        tuner = tune.Tuner(
            tune.with_resources(run_trial, {"cpu": params.sweep.trial_cpus}),
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=params.sweep.max_concurrent_trials),
            run_config=tune.RunConfig(name=name, storage_path=str(rows_dir.parents[1]), verbose=1),
        )
        grid = tuner.fit()
        trials, failures = [], []
        for result in grid:
            if result.error is not None:
                failures.append(
                    f"{result.config['row']['label']} seed {result.config['seed']}: {result.error}"
                )
            else:
                trials.append(dict(result.metrics))
        if failures:
            raise SweepError(f"sweep {name}: {len(failures)} trial(s) failed:\n" + "\n".join(failures))
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    measured = []
    for row in rows:
        runs = [{k: t[k] for k in (*METRICS, "FPS") if k in t} for t in trials if t.get("row") == row.label]
        measured.append(aggregate_seeds(row.label, row.settings, runs))
    return SweepOutcome(name, parent_id, measured, trials)


def run_table(
    table: int,
    params: Params,
    *,
    params_file: str | Path = DEFAULT_PARAMS_FILE,
    base_overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    runner: str = DEFAULT_RUNNER,
    root: Path | None = None,
    reports_dir: Path | None = None,
    only_rows: Sequence[int] | None = None,
) -> tuple[SweepOutcome, list[Path]]:
    """Table 3, 4 or 5: the sweep, its report files and the table in the parent MLflow run.

    `only_rows` (1-based row numbers) runs a subset, e.g. (1, 6) for the baseline and full MOTRv3.
    """
    import mlflow

    from pipeline.mlflow_utils import tracking_uri

    root = Path(root or Path.cwd()).resolve()
    rows = table_rows(table, params)
    if only_rows:
        bad = [n for n in only_rows if not 1 <= n <= len(rows)]
        if bad:
            raise SweepError(f"--rows: Table {table} has rows 1..{len(rows)}, got {bad}")
        rows = [rows[n - 1] for n in only_rows]
    outcome = run_sweep(
        f"table{table}", rows, params, params_file=params_file, base_overrides=base_overrides,
        seeds=seeds, runner=runner, root=root, parent_tags={"table": str(table)},
    )  # fmt: skip
    rows_dir = rows_dir_of(params, root, f"table{table}")
    paper = reported(table)
    columns = paper.columns if table != 4 else ("source",)
    split = params.sweep.split or params.dataset.eval_split
    notes = [
        f"Each measured row: train → track → evaluate with the row's overrides on {params.dataset.name} "
        f"{split} (profile {params.profile}); seeds {sorted({int(t['seed']) for t in outcome.trials})}.",
        f"MLflow: parent run `table{table}` ({outcome.parent_run_id}) with one child run per trial.",
    ]
    if table == 4:
        notes.append(
            "Sources here are this repository's: `detector` = the in-pipeline Deformable-DETR detector, "
            "`detfile` = the dataset's det/det.txt, `gt` = ground truth copied; the paper used YOLOX and "
            "Sparse RCNN."
        )
    comparison = Comparison(
        name=f"table{table}",
        title=f"Table {table}: {paper.caption}",
        measured_context=f"{params.dataset.name} {split}, profile {params.profile}",
        columns=columns,
        metrics=METRICS,
        measured=outcome.rows,
        paper=paper,
        notes=notes,
        measured_notes=measured_notes(outcome, rows_dir),
    )
    out_dir = reports_dir or root / paths.REPORTS_DIR
    written = list(write_comparison(comparison, out_dir))
    written += sweep_figures(f"table{table}", rows, rows_dir, out_dir)
    uri = tracking_uri(params.mlflow.tracking_uri, root)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=outcome.parent_run_id):
        log_comparison(comparison)
        for row in outcome.rows:
            for key, value in row.metrics.items():
                mlflow.log_metric(f"{row_slug(row.label)}/{key}", value)
    return outcome, written
