"""Custom data of several classes (`dataset.classes`): the params rule, the gt rules, the loader's
labels, the tracker's class, per-class TrackEval scoring, and a two-class tree converted; its
checkpoint, trained a few steps in `test_multiclass_pld_baselines`, tracked and scored end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.data.loader import ClipDataset
from pipeline.data.reader import export_motchallenge_gt
from pipeline.evaluation.trackeval_runner import evaluate_folder, format_table, write_metrics_json
from pipeline.formats import motchallenge as mot
from pipeline.formats.errors import DataError, Issues
from pipeline.params import ParamsError, resolve
from pipeline.steps.convert import run as convert

CLASSES = {1: "pedestrian", 3: "car"}
WIDTH, HEIGHT, FRAMES = 96, 64, 6
COLOURS = {1: (230, 60, 60), 3: (60, 60, 230), 5: (60, 230, 60)}


def objects(seq: int) -> list[tuple[int, int, int]]:
    """(identity, gt class, consider) of a sequence: a pedestrian, a car, an unmapped class 5 and a
    car marked not to be considered."""
    return [(1, 1, 1), (2, 3, 1), (3, 5, 1), (4, 3, 0)] if seq % 2 else [(1, 3, 1), (2, 1, 1), (3, 1, 1)]


def write_tree(root: Path, splits: dict[str, int]) -> Path:
    """A MOTChallenge-layout tree of small JPEG sequences whose gt holds classes 1, 3 and 5."""
    for split, count in splits.items():
        for seq in range(count):
            folder = root / split / f"{split}-{seq:02d}"
            (folder / "img1").mkdir(parents=True)
            (folder / "gt").mkdir()
            (folder / "seqinfo.ini").write_text(
                f"[Sequence]\nname={folder.name}\nimDir=img1\nframeRate=10\nseqLength={FRAMES}\n"
                f"imWidth={WIDTH}\nimHeight={HEIGHT}\nimExt=.jpg\n"
            )
            rows = []
            for frame in range(1, FRAMES + 1):
                image = np.full((HEIGHT, WIDTH, 3), 20, np.uint8)
                for k, (identity, cls, consider) in enumerate(objects(seq)):
                    x, y = 4 + 22 * k + frame, 8 + 6 * (k % 2) + frame
                    w, h = (10, 22) if cls == 1 else (18, 12)
                    image[y : y + h, x : x + w] = COLOURS[cls]
                    rows.append(f"{frame},{identity},{x},{y},{w},{h},{consider},{cls},1\n")
                cv2.imwrite(str(folder / "img1" / f"{frame:06d}.jpg"), image[:, :, ::-1])
            (folder / "gt" / "gt.txt").write_text("".join(rows))
    return root


def custom_params(root: Path, *extra: str):
    return resolve(
        {},
        [
            "dataset.name=custom",
            f"dataset.root={root}",
            "dataset.classes={1: pedestrian, 3: car}",
            "dataset.test_split=null",
            *extra,
        ],
    )


# ---- params


def test_num_classes_follows_classes_and_a_conflict_names_both_keys(tmp_path):
    assert resolve({}).dataset.classes == {1: "pedestrian"}  # the default: one class
    assert resolve({}).model.num_classes == 1
    params = custom_params(tmp_path)
    assert params.dataset.classes == CLASSES and list(params.dataset.classes) == [1, 3]  # label order
    assert params.model.num_classes == 2
    assert params.library_config().model.num_classes == 2
    # A checkpoint's / a Ray worker's JSON copy (keys as text) reads back the same.
    again = type(params).model_validate(json.loads(json.dumps(params.as_dict())))
    assert again.dataset.classes == CLASSES and again.model.num_classes == 2
    assert custom_params(tmp_path, "model.num_classes=2").model.num_classes == 2  # agreeing: fine
    with pytest.raises(ParamsError, match=r"model\.num_classes: 3 conflicts with dataset\.classes"):
        custom_params(tmp_path, "model.num_classes=3")


@pytest.mark.parametrize(
    "override, message",
    [
        ("dataset.classes={1: pedestrian, 3: pedestrian}", "names must differ"),
        ("dataset.classes={}", "at least one class"),
        ("dataset.classes={-1: thing}", "ids are ≥ 0"),
        ("dataset.classes={1: 'two words'}", "names are letters"),
        ("dataset.classes={car: 1}", r"dataset\.classes"),
    ],
)
def test_bad_classes_are_refused_by_name(override, message):
    with pytest.raises(ParamsError, match=message):
        resolve({}, ["dataset.name=custom", override])


def test_benchmarks_stay_single_class():
    for name in ("synthetic", "dancetrack", "mot17"):
        with pytest.raises(ParamsError, match="other classes need dataset.name: custom"):
            resolve({}, [f"dataset.name={name}", "dataset.classes={1: pedestrian, 3: car}"])
        assert resolve({}, [f"dataset.name={name}", "dataset.classes={1: pedestrian}"]).model.num_classes == 1


# ---- gt rules and result files


def test_gt_rows_of_unmapped_classes_are_ignored_and_bad_classes_name_the_line(tmp_path):
    info = mot.SeqInfo("s", 2, WIDTH, HEIGHT)
    path = tmp_path / "gt.txt"
    path.write_text("1,1,1,1,5,5,1,1,1\n1,2,1,1,5,5,1,3,1\n1,3,1,1,5,5,1,5,1\n2,1,1,1,5,5,0,3,1\n")
    rows = mot.read_gt_rows(path, info, "custom", Issues(), classes=list(CLASSES))
    assert [(r.cls, r.ignore) for r in rows] == [(1, False), (3, False), (5, True), (3, True)]
    # Without a mapping (and for MOT17), class 1 only, as before.
    assert [r.ignore for r in mot.read_gt_rows(path, info, "custom", Issues())] == [False, True, True, True]
    path.write_text("1,1,1,1,5,5,1,1,1\n1,2,1,1,5,5,1,-3,1\n")
    with pytest.raises(DataError) as error:
        mot.read_gt_rows(path, info, "custom", Issues(), classes=list(CLASSES))
    assert (error.value.line, error.value.field) == (2, "class")
    lenient = Issues(lenient=True)
    assert len(mot.read_gt_rows(path, info, "custom", lenient, classes=list(CLASSES))) == 1
    assert lenient.summary()["counts"] == {"malformed_row": 1}
    path.write_text("1,1,1,1,5,5,1,1.5,1\n")
    with pytest.raises(DataError, match="class: not an integer"):
        mot.read_gt_rows(path, info, "custom", Issues(), classes=list(CLASSES))


def test_result_rows_carry_the_class_in_column_8(tmp_path):
    one = mot.format_results(np.array([[1, 1, 0, 0, 5, 5, 0.9, -1]]))
    assert one == "1,1,0.00,0.00,5.00,5.00,0.9000,-1,-1,-1\n"  # one class: MOTChallenge's rows as before
    path = tmp_path / "s.txt"
    mot.write_results(path, np.array([[1, 1, 0, 0, 5, 5, 0.9, 3], [1, 2, 0, 0, 5, 5, 0.8, 1]]))
    assert mot.read_results(path, 2, classes=[1, 3])[:, mot.RESULT_CLASS].tolist() == [3, 1]
    path.write_text("1,1,0,0,5,5,0.9,3,-1,-1\n1,2,0,0,5,5,0.9,4,-1,-1\n")
    with pytest.raises(DataError) as error:
        mot.read_results(path, 2, classes=[1, 3])
    assert (error.value.line, error.value.field) == (2, "class")


def test_drawn_labels_name_the_class_when_there_are_several():
    from pipeline.drawing import Annotator, class_names, rows_to_tracks

    names = class_names(CLASSES)
    tracks = rows_to_tracks(np.array([[1, 7, 0, 0, 5, 5, 0.9, 3], [1, 8, 0, 0, 5, 5, 0.9, 1]]), names)
    assert [t.label for t in tracks] == [1, 0]  # gt class id → label (dataset.classes order)
    annotator = Annotator(names=names)
    assert [annotator.label(t.track_id, t.label) for t in tracks] == ["7 car", "8 pedestrian"]
    assert class_names({1: "pedestrian"}) is None and Annotator().label(7, 0) == "7"  # one class: as before


# ---- data, tracker, scoring


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiclass")
    tree = write_tree(root / "raw", {"train": 2, "val": 2})
    params = custom_params(tree, *TINY)
    manifests = convert(params, root / "clips", progress=False)
    return root, params, manifests


def test_convert_records_classes_and_the_loader_labels_by_mapping_order(converted):
    root, params, manifests = converted
    manifest = manifests["train"]
    assert manifest["classes"] == {"1": "pedestrian", "3": "car"}
    assert manifest["totals"]["class_objects"] == {"1": 3 * FRAMES, "3": 3 * FRAMES, "5": FRAMES}
    dataset = ClipDataset(root / "clips" / "train", params.data, train=False, classes=params.dataset.classes)
    labels = sorted(set(np.concatenate([t["labels"].numpy() for t in dataset[0]["targets"]]).tolist()))
    assert labels == [0, 1]  # class 1 → 0, class 3 → 1; class 5 and the consider-0 car dropped
    assert dataset[0]["meta"]["sequence"] == "train-00"
    assert dataset[0]["targets"][0]["labels"].tolist() == [1, 0, 0]  # ids 1-3: car, pedestrian, pedestrian
    with pytest.raises(DataError, match="re-run convert"):
        ClipDataset(root / "clips" / "train", params.data, classes={1: "pedestrian"})


def test_per_class_scores_and_their_combination(converted, tmp_path):
    root, _, _ = converted
    gt = tmp_path / "gt"
    export_motchallenge_gt(root / "clips" / "val", gt)
    results = tmp_path / "results"
    results.mkdir()
    for seq_dir in sorted(gt.iterdir()):
        info = mot.read_seqinfo(seq_dir / "seqinfo.ini")
        rows = mot.read_gt(seq_dir / "gt" / "gt.txt", info, "custom", list(CLASSES))
        pedestrians = rows[(rows[:, 7] == 1) & (rows[:, 6] == 1)]  # perfect pedestrians, no car at all
        out = np.column_stack([pedestrians[:, :6], np.ones(len(pedestrians)), pedestrians[:, 7]])
        mot.write_results(results / f"{seq_dir.name}.txt", out)
    evaluation = evaluate_folder(gt, results, "custom", classes=CLASSES)
    assert set(evaluation.per_class) == {"pedestrian", "car"}
    assert evaluation.per_class["pedestrian"]["HOTA"] > 99 and evaluation.per_class["pedestrian"]["IDS"] == 0
    assert evaluation.per_class["car"]["HOTA"] == 0 and evaluation.per_class["car"]["FN"] > 0
    # Detection-averaged: counts add up over classes; the class mean averages the percentages.
    assert evaluation.overall["FN"] == evaluation.per_class["car"]["FN"]
    assert evaluation.overall["GT_Dets"] == sum(c["GT_Dets"] for c in evaluation.per_class.values())
    assert 0 < evaluation.overall["HOTA"] < 99
    assert evaluation.class_mean["MOTA"] == pytest.approx(
        np.mean([c["MOTA"] for c in evaluation.per_class.values()])
    )
    assert evaluation.overall["CLR_Frames"] == 2 * FRAMES  # frames counted once, not once per class
    write_metrics_json(evaluation, tmp_path / "m.json")
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["car/HOTA"] == 0 and written["class_mean/MOTA"] == evaluation.class_mean["MOTA"]
    assert "class car" in format_table(evaluation)
    # One class (the default) keeps today's shape: no per-class keys.
    single = evaluate_folder(gt, results, "custom")
    assert single.per_class == {} and not any("/" in key for key in single.overall)


# Tiny sizes (tests/test_train.py's recipe): a few CPU steps in seconds.
TINY = [
    "profile=paper",
    "train.workers=1",
    "train.batch_size=1",
    "train.epochs=1",
    "train.lr_drop=1",
    "train.max_steps_per_epoch=3",
    "train.loader_workers=0",
    "train.validate_every_epochs=0",
    "train.cpus_per_worker=1",
    "train.init_checkpoint=null",
    "rfs.enabled=false",
    "pld.enabled=false",
    "tgd.enabled=false",
    "model.backbone=resnet18",
    "model.deform_attn_impl=pytorch",
    "model.d_model=32",
    "model.nheads=2",
    "model.enc_layers=1",
    "model.dec_layers=2",
    "model.dim_feedforward=64",
    "model.enc_n_points=1",
    "model.dec_n_points=1",
    "model.num_queries=8",
    "data.clip_length=2",
    "data.sample_interval_max=1",
    "data.train_scales=[64]",
    "data.train_max_size=96",
    "data.random_crop=false",
    "data.flip_prob=0.0",
    "data.eval_size=64",
    "data.eval_max_size=96",
    "tracking.new_track_score=0.0",  # a barely trained model: every detect query becomes a track
    "tracking.keep_track_score=0.0",
    "track.cpus_per_worker=1",
    "track.device=cpu",
]


def check_tracks_and_scores_per_class(params, root: Path, checkpoint: Path, out: Path, method: str) -> None:
    """A two-class checkpoint of the tree tracks its val split (each track one class, both classes
    present) and TrackEval scores it per class. The train step that writes such a checkpoint on Ray
    Train is `test_multiclass_pld_baselines.test_two_class_tree_trains_pld_tracks_and_scores_per_class`
    (one run serves both: PLD and the classes)."""
    import motrv3
    from pipeline.evaluation.split import score_split
    from pipeline.inference.split_tracking import settings_from_params, track_split

    model, config = motrv3.load_checkpoint(checkpoint)
    assert model.num_classes == 2 and config["dataset"]["classes"] == {"1": "pedestrian", "3": "car"}

    val, results = root / "clips" / "val", out / "results"
    track_split(settings_from_params(params, checkpoint), val, results, progress=False)
    rows = np.concatenate([mot.read_results(path, FRAMES, classes=[1, 3]) for path in results.glob("*.txt")])
    assert set(rows[:, mot.RESULT_CLASS].astype(int)) == {1, 3}  # both classes tracked, as gt class ids
    for path in results.glob("*.txt"):  # one class per track (identities are per sequence)
        seq_rows = mot.read_results(path, FRAMES)
        for identity in np.unique(seq_rows[:, 1]):
            assert len(set(seq_rows[seq_rows[:, 1] == identity, mot.RESULT_CLASS])) == 1

    evaluation = score_split(params, results, val, out / "metrics", method)
    assert set(evaluation.per_class) == {"pedestrian", "car"}
    assert evaluation.overall["GT_Dets"] == sum(c["GT_Dets"] for c in evaluation.per_class.values())
    table = (out / "metrics" / f"{method}_per_class.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table] == ["class", "pedestrian", "car", "class_mean", "COMBINED"]
    scores = json.loads((out / "metrics" / f"{method}.json").read_text())
    assert {"pedestrian/HOTA", "car/HOTA", "class_mean/HOTA", "HOTA"} <= set(scores)
