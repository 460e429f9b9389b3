"""Several classes through PLD and the baselines: pseudo labels carry each box's class (detector: the
class it scored, gt: the row's, detection files: 0), the criterion trains Eq. 3's matches on it, a
two-class tree trains a few PLD steps then tracks and scores per class, and the baseline trackers
run per class and score per class."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data.loader import ClipDataset
from pipeline.data.pseudo_label_store import read_pseudo_labels, read_pseudo_sources, write_pseudo_labels
from pipeline.data.reader import DatasetReader
from pipeline.formats import motchallenge as mot
from pipeline.formats.errors import DataError
from pipeline.steps.pseudo_labels import run as run_pseudo_labels
from pipeline.steps.pseudo_labels.sources import gt_source
from tests.test_multiclass import (  # noqa: F401 (fixture)
    CLASSES,
    FRAMES,
    TINY,
    check_tracks_and_scores_per_class,
    converted,
    custom_params,
)


def two_class_detector(params, path: Path, classes=CLASSES) -> None:
    """A random detector of the tree's model config, saved as the detector stage would (its classes)."""
    import motrv3

    torch.manual_seed(0)
    cfg = dataclasses.replace(params.library_config().model, num_classes=len(classes))
    model = motrv3.build_model(cfg)
    with torch.no_grad():  # lift the focal prior so a random model's scores pass pld.threshold
        for head in model.class_embed:
            head.bias.fill_(-1.0)
    config = {
        "model": motrv3.config.to_dict(cfg),
        "dataset": {"classes": {str(k): v for k, v in classes.items()}},
    }
    motrv3.save_checkpoint(path, model, config)


def pld_overrides(root: Path, params, tmp: Path) -> list[str]:
    """PLD on with three sources: gt, our two-class detector and a det.txt folder (one class)."""
    dets = tmp / "dets"
    for seq_dir in sorted((root / "raw" / "train").iterdir()):
        (dets / seq_dir.name / "det").mkdir(parents=True)
        (dets / seq_dir.name / "det" / "det.txt").write_text("1,-1,4,8,10,20,0.8\n2,-1,5,9,10,20,0.7\n")
    checkpoint = tmp / "detector.pt"
    two_class_detector(params, checkpoint)
    return [
        "pld.enabled=true",
        "pld.threshold=0.05",
        "pld.sources=[gt, detector, detfile:mine]",
        "pseudo_labels.sources=[]",
        "pseudo_labels.workers=1",
        f"pseudo_labels.detector_checkpoint={checkpoint}",
        f"pseudo_labels.detfile={{mine: {{path: {dets}}}}}",
    ]


def generate(root: Path, out: Path, *extra: str):
    """The pseudo_labels step on the tree's train split → `<out>/pl/train/`; (params, manifest)."""
    params = custom_params(root / "raw", *TINY, *extra)
    manifest = run_pseudo_labels(
        params,
        clips_dir=root / "clips",
        out_root=out / "pl",
        summary_path=None,
        plot_path=None,
        progress=False,
    )
    return params, manifest


@pytest.fixture(scope="module")
def store(converted, tmp_path_factory):  # noqa: F811
    """The two-class tree's pseudo labels of three sources (gt, a two-class detector, a det.txt)."""
    root, params, _ = converted
    tmp = tmp_path_factory.mktemp("pld")
    params, manifest = generate(root, tmp, *pld_overrides(root, params, tmp))
    return root, params, tmp, manifest


def stored_labels(store_dir: Path) -> dict[str, set[int]]:
    table = pq.read_table(store_dir / "pseudo_labels.parquet")
    result: dict[str, set[int]] = {}
    for source, labels in zip(
        table.column("source").to_pylist(), table.column("labels").to_pylist(), strict=True
    ):
        result.setdefault(source, set()).update(labels)
    return result


# ---- the store


def test_every_source_stores_each_box_class(store):
    root, params, tmp, manifest = store
    out = tmp / "pl" / "train"
    assert stored_labels(out) == {"gt": {0, 1}, "detector": {0, 1}, "detfile:mine": {0}}
    assert manifest["classes"] == {"1": "pedestrian", "3": "car"}
    # Counted gt a frame over both sequences: 3 pedestrians, 2 cars (the consider-0 car left out).
    assert manifest["sources"]["gt"]["class_boxes"] == {"1": 3 * FRAMES, "3": 2 * FRAMES}
    # gt: the row's label, as the loader labels targets (train-00 frame 1: car, pedestrian, pedestrian)
    labelled = gt_source(DatasetReader(root / "clips" / "train"), with_labels=True)
    assert labelled[("train-00", 1)][2].tolist() == [1, 0, 0]
    # detector: the class each box scored, i.e. motrv3.detect's argmax on the decoded frame
    import motrv3
    from pipeline.data.images import decode_image

    model, _ = motrv3.load_checkpoint(tmp / "detector.pt")
    frame = DatasetReader(root / "clips" / "train").frames("train-01", [2])[0]
    _, scores, labels = motrv3.detect(model, decode_image(frame.image), 64, 96, with_labels=True)
    got = read_pseudo_sources(out, 0.05, ["detector"], CLASSES)[("train-01", frame.frame)]
    assert got[3].tolist() == labels[scores >= 0.05].tolist()


def test_a_detector_of_other_classes_is_refused_naming_the_checkpoint(store):
    root, params, tmp, _ = store
    one_class = tmp / "one_class.pt"
    two_class_detector(params, one_class, {1: "pedestrian"})
    with pytest.raises(ValueError, match=f"{one_class}: a detector of 1 classes"):
        generate(root, tmp / "other", "pld.enabled=true", "pld.sources=[detector]", "pseudo_labels.sources=[]",
                 "pseudo_labels.workers=1", f"pseudo_labels.detector_checkpoint={one_class}")  # fmt: skip


def test_a_store_without_labels_reads_as_one_class_or_is_refused_naming_the_file(tmp_path):
    old_schema = pa.schema([("sequence", pa.string()), ("frame", pa.int32()), ("boxes", pa.list_(pa.list_(pa.float32()))),
                            ("scores", pa.list_(pa.float32())), ("source", pa.string())])  # fmt: skip
    rows = [{"sequence": "s", "frame": 1, "boxes": [[0, 0, 4, 4]], "scores": [0.9], "source": "gt"}]
    old = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), old)
    assert read_pseudo_labels(old)[("s", 1)][1].tolist() == pytest.approx([0.9])
    assert read_pseudo_sources(old, 0.05, ["gt"])[("s", 1)][3].tolist() == [0]  # one class: label 0
    with pytest.raises(DataError) as error:
        read_pseudo_sources(old, 0.05, ["gt"], CLASSES)
    assert (error.value.file, error.value.field) == (str(old), "labels")
    assert "re-run the pseudo_labels stage" in str(error.value)
    bad = tmp_path / "bad.parquet"
    write_pseudo_labels([dict(rows[0], labels=[2])], bad)
    with pytest.raises(DataError, match=r"labels \[2\] outside 0\.\.1") as error:
        read_pseudo_sources(bad, 0.05, ["gt"], CLASSES)
    assert (error.value.file, error.value.field) == (str(bad), "row 0.labels")


# ---- the criterion


def test_eq3_trains_a_matched_query_on_the_pseudo_box_class():
    from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig
    from motrv3.criterion import ClipCriterion
    from motrv3.matcher import build_matcher
    from motrv3.structures import FrameOutput
    from tests.test_criterion import focal_negative, focal_positive

    criterion = ClipCriterion(build_matcher(LossConfig()), LossConfig(aux_loss=True), RFSConfig(enabled=False),
                              PLDConfig(enabled=True), TGDConfig(enabled=False), num_classes=2)  # fmt: skip
    box = [0.5, 0.5, 0.2, 0.2]
    out = FrameOutput(logits=torch.tensor([[[0.5, -1.0]]]), boxes=torch.tensor([[box]]),
                      hidden=torch.zeros(1, 8), num_det=1, num_track=0, num_groups=0)  # fmt: skip
    empty = torch.zeros(0, dtype=torch.long)

    def pld_cls(labels):
        target = {"boxes": torch.zeros(0, 4), "labels": empty, "obj_ids": empty, "pseudo_boxes": torch.tensor([box]),
                  "pseudo_scores": torch.tensor([0.9])}  # fmt: skip
        if labels is not None:
            target["pseudo_labels"] = torch.tensor(labels)
        criterion.validate_targets([target])
        return criterion.frame_loss(out, target, empty).losses["pld_cls"].item()

    # λ_cls 2 × ω 0.9 × the focal loss of both class logits, the pseudo box's class the positive one
    assert pld_cls([1]) == pytest.approx(2 * 0.9 * (focal_negative(0.5) + focal_positive(-1.0)), rel=1e-5)
    assert pld_cls([0]) == pytest.approx(2 * 0.9 * (focal_positive(0.5) + focal_negative(-1.0)), rel=1e-5)
    assert pld_cls(None) == pld_cls([0])  # no pseudo_labels: class 0, as before classes existed
    with pytest.raises(ValueError, match=r"pseudo_labels \[2\] outside 0\.\.1"):
        pld_cls([2])


def test_two_class_tree_trains_pld_tracks_and_scores_per_class(store, tmp_path):
    """The loader hands the store's classes to the criterion; the train step runs 3 PLD steps on Ray
    Train; the two-class checkpoint it writes tracks and scores per class end to end."""
    import motrv3
    from pipeline.ray_utils import init_ray
    from pipeline.steps.train import run as train

    root, params, tmp, _ = store
    params = params.model_copy(deep=True)
    params.pld.sources = ["detector", "gt"]
    clips = ClipDataset(root / "clips" / "train", params.data, train=False, pseudo_labels=tmp / "pl" / "train",
                        pld_threshold=0.05, pld_sources=params.pld.sources, classes=params.dataset.classes)  # fmt: skip
    clip = clips[0]
    labels = torch.cat([t["pseudo_labels"] for t in clip["targets"]])
    assert set(labels.tolist()) == {0, 1}
    components = motrv3.build(params.library_config())
    criterion, model = components.criterion, components.model.eval()
    received = set()
    for target in clip["targets"]:
        frame = criterion.prepare_frame(target, torch.zeros(0, dtype=torch.long), 8, torch.device("cpu"))
        received.update(c for _, (classes, _, _) in frame.pseudo_sets for c in classes.tolist())
    assert received == {0, 1}
    # The class changes what Eq. 3 trains: the same clip with every pseudo box of class 0 differs.
    with torch.no_grad():
        loss = motrv3.clip_forward(model, criterion, clip, params.library_config().tracking).terms["pld_cls"]
        for target in clip["targets"]:
            target["pseudo_labels"] = torch.zeros_like(target["pseudo_labels"])
        as_one = motrv3.clip_forward(model, criterion, clip, params.library_config().tracking).terms[
            "pld_cls"
        ]
    assert float(loss) != pytest.approx(float(as_one))

    params.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params.train.storage_path = str(tmp_path / "ray")
    ray = init_ray(num_cpus=2)
    try:
        metrics = train(params, "motrv3", tmp_path / "models" / "motrv3", clips_dir=root / "clips",
                        pseudo_labels_dir=tmp / "pl", progress=False)  # fmt: skip
    finally:
        ray.shutdown()  # only the instance this test started
    assert metrics["global_steps"] == 3 and metrics["final_losses"]["pld_cls"] > 0
    check_tracks_and_scores_per_class(
        params, root, tmp_path / "models" / "motrv3" / "checkpoint.pt", tmp_path, "motrv3"
    )


# ---- the baselines


def test_baselines_track_and_score_per_class(converted, tmp_path):  # noqa: F811
    from pipeline.steps import baselines

    root, params, _ = converted
    val = root / "clips" / "val"
    truth = gt_source(DatasetReader(val), with_labels=True)
    dets = {
        key: (boxes, np.full(len(boxes), 0.9, np.float32), labels)
        for key, (boxes, _, labels) in truth.items()
    }
    summary = baselines.run(params, val, results_root=tmp_path / "results", metrics_dir=tmp_path / "metrics",
                            dets=dets, progress=False)  # fmt: skip
    print({name: round(values["HOTA"], 1) for name, values in summary.items() if name != "detector"})
    for name in params.baselines.trackers:
        rows = []
        for path in sorted((tmp_path / "results" / name / "val").glob("*.txt")):
            seq_rows = mot.read_results(path, FRAMES, classes=list(CLASSES))
            for identity in np.unique(seq_rows[:, 1]):  # one class per track: ids unique across classes
                assert len(set(seq_rows[seq_rows[:, 1] == identity, mot.RESULT_CLASS])) == 1
            rows.append(seq_rows)
        assert set(np.concatenate(rows)[:, mot.RESULT_CLASS].astype(int)) == {1, 3}
        scores = json.loads((tmp_path / "metrics" / f"{name}.json").read_text())
        assert {"pedestrian/HOTA", "car/HOTA", "class_mean/HOTA"} <= set(scores)
        assert min(scores["pedestrian/HOTA"], scores["car/HOTA"]) > 40.0
        assert (tmp_path / "metrics" / f"{name}_per_class.csv").is_file()
    # The detector reference: perfect boxes of the right class score as such per class.
    assert summary["detector"]["DetA"] > 95.0
    wrong = {key: (b, s, 1 - labels) for key, (b, s, labels) in dets.items()}  # every class swapped
    assert baselines.detector_report(params, wrong, val, 0.5)["DetA"] < 5.0
