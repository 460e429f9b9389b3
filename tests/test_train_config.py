"""Fast checks of the training set-up (no Ray): §4.2 optimiser/schedule, per-method params, run names."""

from __future__ import annotations

import pytest
import torch

from pipeline.params import load_params
from pipeline.paths import REPO_ROOT
from pipeline.steps.train.distributed import step_seed
from pipeline.steps.train.driver import run_name
from pipeline.steps.train.methods import TrainingError, check_inputs, method_params
from pipeline.steps.train.optim import build_optimizer, current_lrs


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)
        self.head = torch.nn.Linear(2, 1)
        self.frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)


def test_adamw_groups_and_single_step_down():
    """§4.2 hand-worked: lr 2e-4 / backbone 2e-5; DanceTrack 5 epochs, lr_drop 4 → epoch 4 at 1/10."""
    model = _Toy()
    optimizer, scheduler = build_optimizer(model, 2e-4, 2e-5, 1e-4, lr_drop=4)
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in model.backbone.parameters()}
    assert len(groups["main"]["params"]) == 2  # head weight + bias; the frozen parameter is left out
    per_epoch = []
    for _ in range(6):
        per_epoch.append(current_lrs(optimizer))
        optimizer.step()
        scheduler.step()
    assert [e["lr"] for e in per_epoch] == pytest.approx([2e-4] * 4 + [2e-5] * 2)
    assert [e["lr_backbone"] for e in per_epoch] == pytest.approx([2e-5] * 4 + [2e-6] * 2)


def test_method_params():
    params = load_params(
        REPO_ROOT / "params.yaml",
        [
            "tgd.enabled=true",
            "tgd.groups=5",
            "detector.epochs=7",
            "detector.lr_drop=6",
            "train.ema_decay=0.99",
            "detector.ema_decay=0.9",
        ],
    )
    motr = method_params(params, "motr")
    assert not (motr.rfs.enabled or motr.pld.enabled or motr.tgd.enabled)
    motrv3 = method_params(params, "motrv3")
    assert motrv3.tgd.enabled and motrv3.tgd.groups == 5 and motrv3.rfs.enabled == params.rfs.enabled
    detector = method_params(params, "detector")
    assert (
        detector.data.clip_length == params.detector.frames
        and detector.train.epochs == 7
        and detector.train.lr_drop == 6
        and detector.train.ema_decay == 0.9  # detector.* wins for the detector only
    )
    assert motr.train.ema_decay == motrv3.train.ema_decay == 0.99
    assert params.tgd.enabled  # the caller's params are not modified
    with pytest.raises(TrainingError, match="method"):
        method_params(params, "motrv2")


def test_run_name_follows_weight_relevant_params_and_data(tmp_path):
    base = load_params(REPO_ROOT / "params.yaml")
    data = tmp_path / "clips"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    name = run_name(base, "motrv3", [data])
    assert name.startswith("motrv3-") and name == run_name(base, "motrv3", [data])
    same = load_params(
        REPO_ROOT / "params.yaml",
        ["train.max_failures=3", "mlflow.experiment=x", "ray.num_cpus=1", "tracking.birth_overlap=0.7"],
    )
    assert run_name(same, "motrv3", [data]) == name  # inference-only keys reuse the trained run
    trained_differently = load_params(REPO_ROOT / "params.yaml", ["tracking.fp_track_prob=0.2"])
    assert run_name(trained_differently, "motrv3", [data]) != name
    assert run_name(load_params(REPO_ROOT / "params.yaml", ["tgd.groups=5"]), "motrv3", [data]) != name
    (data / "manifest.json").write_text('{"changed": 1}')
    assert run_name(base, "motrv3", [data]) != name


def test_step_seed_depends_on_each_coordinate():
    seeds = {step_seed(0, e, s, r) for e in range(3) for s in range(3) for r in range(2)}
    assert len(seeds) == 18 and step_seed(1, 0, 0, 0) != step_seed(0, 0, 0, 0)
    assert step_seed(0, 2, 1, 1) == step_seed(0, 2, 1, 1)


def test_clear_errors_for_missing_inputs(tmp_path):
    params = method_params(load_params(REPO_ROOT / "params.yaml", ["pld.enabled=true"]), "motrv3")
    with pytest.raises(TrainingError, match="no training clips"):
        check_inputs(params, "motrv3", tmp_path / "clips", tmp_path / "pseudo")
    (tmp_path / "clips" / params.dataset.train_split).mkdir(parents=True)
    with pytest.raises(TrainingError, match="pseudo labels"):
        check_inputs(params, "motrv3", tmp_path / "clips", tmp_path / "pseudo")
    odd = load_params(REPO_ROOT / "params.yaml", ["train.workers=3", "train.batch_size=2"])
    with pytest.raises(TrainingError, match="batch_size"):
        check_inputs(odd, "motr", tmp_path / "clips", None)


def test_a_pld_threshold_below_the_stores_is_refused_before_training(tmp_path):
    """The stage keeps only boxes ≥ its pld.threshold: training asking for lower ones would silently
    train on fewer pseudo labels than it says (a sweep's `--set pld.threshold=0.05` over a 0.4 store)."""
    import json

    from pipeline.formats.errors import DataError

    (tmp_path / "clips" / "train").mkdir(parents=True)
    store = tmp_path / "pseudo"
    store.mkdir()
    (store / "manifest.json").write_text(json.dumps({"sources": {"detfile": {}}, "threshold": 0.4}))
    overrides = ["pld.enabled=true", "pld.sources=[detfile]"]
    at_store = method_params(
        load_params(REPO_ROOT / "params.yaml", [*overrides, "pld.threshold=0.4"]), "motrv3"
    )
    check_inputs(at_store, "motrv3", tmp_path / "clips", store)
    lower = method_params(
        load_params(REPO_ROOT / "params.yaml", [*overrides, "pld.threshold=0.05"]), "motrv3"
    )
    with pytest.raises(DataError, match=r"written at score ≥ 0.4, but pld.threshold is 0.05") as error:
        check_inputs(lower, "motrv3", tmp_path / "clips", store)
    assert error.value.field == "threshold" and error.value.file == str(store / "manifest.json")


def test_teacher_is_the_detector_recipe_with_the_teacher_sections():
    """PLD's teacher (§3.3): the detector's effective params with `teacher` merged in, detection only."""
    params = load_params(
        REPO_ROOT / "params.yaml",
        [
            "teacher.model.dec_layers=5",
            "teacher.detector.epochs=9",
            "detector.epochs=7",
            "model.dec_layers=3",
        ],
    )
    teacher = method_params(params, "teacher")
    detector = method_params(params, "detector")
    assert teacher.model.dec_layers == 5 and detector.model.dec_layers == 3
    assert teacher.train.epochs == 9 and detector.train.epochs == 7
    assert teacher.data.clip_length == detector.data.clip_length == params.detector.frames
    assert not (teacher.rfs.enabled or teacher.pld.enabled or teacher.tgd.enabled)
    assert params.model.dec_layers == 3  # the trackers' model is untouched


def test_teacher_errors_name_the_teacher_key():
    from pipeline.params import ParamsError

    with pytest.raises(ParamsError, match=r"teacher\.model\.dec_layer: Extra inputs"):
        load_params(REPO_ROOT / "params.yaml", ["teacher.model.dec_layer=6"])
    with pytest.raises(ParamsError, match=r"teacher\.data\.eval_size: Input should be a valid integer"):
        load_params(REPO_ROOT / "params.yaml", ["teacher.data.eval_size=big"])
    with pytest.raises(ParamsError, match=r"teacher\.tracking"):
        load_params(REPO_ROOT / "params.yaml", ["teacher.tracking.new_track_score=0.3"])


def test_teacher_stage_trains_nothing_without_teacher_sections(tmp_path, capsys):
    """The paper profile's PLD reads YOLOX's detections: no `teacher`, the stage only leaves a note."""
    from stages.train_teacher import main

    out = tmp_path / "teacher"
    main(["--no-progress", "--output-dir", str(out), "--set", "profile=paper"])
    assert sorted(p.name for p in out.iterdir()) == ["NOT_TRAINED.txt"]
    assert "describes no teacher" in (out / "NOT_TRAINED.txt").read_text()
    assert "describes no teacher" in capsys.readouterr().out
