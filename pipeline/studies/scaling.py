"""Backbone scaling study (MOTRv3 §4.4 "Model scaling up", Fig. 4): baseline and MOTRv3 per backbone.

The paper swaps ResNet-50 for ConvNeXt-T/S/B (`scaling.backbones`' default). The embedded `cpu`
profile cannot train those on 2 cores, so it sets `scaling.backbones` to small ResNets of growing
size, and the report says so. Every (method, backbone) is a trial of the
ablation machinery (`pipeline.studies.sweep.run_sweep`: train → track → evaluate, one MLflow child run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mlflow

from pipeline import paths
from pipeline.mlflow_utils import tracking_uri
from pipeline.params import DEFAULT_PARAMS_FILE, Params, ScalingParams, switch_overrides
from pipeline.reporting.figures import figure4
from pipeline.reporting.paper_results import FIG4_BACKBONES, METRICS
from pipeline.reporting.tables import METHOD_LABELS, Comparison, log_comparison, write_comparison
from pipeline.studies.sweep import DEFAULT_RUNNER, SweepOutcome, SweepRow, run_sweep


def backbones_for(params: Params) -> tuple[list[str], str]:
    """The backbones to scale over (`scaling.backbones`) and a sentence saying which set and why."""
    backbones, paper = list(params.scaling.backbones), ScalingParams().backbones
    if backbones == paper:
        return backbones, f"backbones {', '.join(backbones)} (the paper's Fig. 4)"
    return backbones, (
        f"profile {params.profile}: backbones {', '.join(backbones)} stand in for the "
        f"paper's ResNet-50 / ConvNeXt-T/S/B ({', '.join(paper)})"
    )


def scaling_rows(params: Params, backbones: Sequence[str]) -> list[SweepRow]:
    """One row per (method, backbone); the baseline's switches are off in its params too (not only in training)."""
    rows = []
    for method in params.scaling.methods:
        switches = switch_overrides(False, False, False) if method == "motr" else ()
        for backbone in backbones:
            rows.append(
                SweepRow(
                    label=f"{METHOD_LABELS.get(method, method)} · {backbone}",
                    settings={"method": method, "backbone": backbone},
                    overrides=(f"model.backbone={backbone}", *switches),
                    method=method,
                )
            )
    return rows


def run_scaling(
    params: Params,
    *,
    params_file: str | Path = DEFAULT_PARAMS_FILE,
    base_overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    runner: str = DEFAULT_RUNNER,
    root: Path | None = None,
    reports_dir: Path | None = None,
) -> tuple[SweepOutcome, list[Path]]:
    """Run the study; write reports/scaling.{md,csv}, reports/figures/fig4_scaling.png, plots CSV."""
    root = Path(root or Path.cwd()).resolve()
    reports_dir = Path(reports_dir) if reports_dir else root / paths.REPORTS_DIR
    backbones, note = backbones_for(params)
    rows = scaling_rows(params, backbones)
    outcome = run_sweep(
        "scaling", rows, params, params_file=params_file, base_overrides=base_overrides, seeds=seeds,
        runner=runner, root=root, parent_tags={"figure": "4"},
    )  # fmt: skip
    points = [
        {"method": row.settings["method"], "backbone": row.settings["backbone"], **measured.metrics}
        for row, measured in zip(rows, outcome.rows, strict=True)
    ]
    split = params.sweep.split or params.dataset.eval_split
    context = f"{params.dataset.name} {split}, profile {params.profile}"
    comparison = Comparison(
        name="scaling",
        title="Fig. 4: model scaling up (HOTA per backbone, baseline vs MOTRv3)",
        measured_context=context,
        columns=("method", "backbone"),
        metrics=METRICS,
        measured=outcome.rows,
        paper=None,
        notes=[
            note + ".",
            "The paper prints no numbers for Fig. 4 (a plot over " + ", ".join(FIG4_BACKBONES) + "), "
            "so there is no reported section; its finding is that MOTRv3 improves steadily with larger "
            "backbones while MOTRv2 does not.",
        ],
    )
    written = list(write_comparison(comparison, reports_dir))
    written += figure4(points, backbones, context, reports_dir)
    mlflow.set_tracking_uri(tracking_uri(params.mlflow.tracking_uri, root))
    with mlflow.start_run(run_id=outcome.parent_run_id):
        log_comparison(comparison)
        for path in written:
            if path.suffix == ".png":
                mlflow.log_artifact(str(path), artifact_path="figures")
    return outcome, written
