"""One table per extension point: the tracking-by-detection trackers (`pipeline.baseline_trackers`) and
the datasets (`pipeline.datasets`); the params schema, the report labels, the convert and evaluate
steps and dvc.yaml's outputs all follow them."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from pipeline.baseline_trackers import TRACKERS, BaselineTracker, make_tracker, tracker_settings
from pipeline.datasets import DATASETS
from pipeline.evaluation.benchmarks import benchmark_of, get_benchmark
from pipeline.params import BaselinesParams, DatasetParams, resolve
from pipeline.reporting.tables import BASELINE_TRACKERS, METHOD_LABELS
from pipeline.steps.convert import source_of

REPO = Path(__file__).resolve().parents[1]


def literal_choices(annotation) -> set[str]:
    """The strings of every `Literal[...]` inside a (possibly nested) annotation."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(literal_choices(arg) for arg in typing.get_args(annotation)))


def dvc_outputs(stage: dict) -> set[str]:
    names = set()
    for kind in ("outs", "metrics", "plots"):
        for out in stage.get(kind, []):
            names.add(out if isinstance(out, str) else next(iter(out)))
    return names


def test_params_choices_are_the_registries_keys():
    fields = BaselinesParams.model_fields
    assert literal_choices(fields["trackers"].annotation) == set(TRACKERS)
    assert literal_choices(fields["tracker_args"].annotation) == set(TRACKERS)
    assert BaselinesParams().trackers == list(TRACKERS)
    assert literal_choices(DatasetParams.model_fields["name"].annotation) == set(DATASETS)


def test_report_labels_come_from_the_tracker_registry():
    assert tuple(TRACKERS) == BASELINE_TRACKERS
    assert {name: METHOD_LABELS[name] for name in TRACKERS} == {n: s.label for n, s in TRACKERS.items()}


def test_dvc_baselines_outputs_match_the_tracker_registry():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    outputs = dvc_outputs(dvc["stages"]["baselines"])
    expected = {f"results/{n}" for n in TRACKERS} | {f"metrics/{n}.json" for n in TRACKERS}
    expected |= {f"metrics/{n}_per_sequence.csv" for n in TRACKERS} | {"metrics/detector.json"}
    assert outputs == expected
    # Table 1 reads every tracker's metrics: the tables stage depends on them.
    assert {f"metrics/{n}.json" for n in TRACKERS} <= set(dvc["stages"]["tables"]["deps"])


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_every_registered_tracker_builds_and_has_the_protocol(name):
    tracker = make_tracker(name, tracker_settings(name, {}, 25.0))
    assert isinstance(tracker, BaselineTracker)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_dataset_reads_and_scores_under_its_table_entry(name):
    spec = DATASETS[name]
    params = resolve({"dataset": {"name": name, "root": "/somewhere"}})
    assert source_of(params) == (Path("/somewhere"), spec.rules)  # convert's reader rules
    assert callable(spec.load_reader())
    assert benchmark_of(params) == spec.benchmark  # evaluate's benchmark
    assert get_benchmark(spec.benchmark).rules == spec.rules  # the same ground truth either way
