"""Stage pseudo_labels: every source on a tiny converted dataset, the PLD threshold, detfile validation,
parallel/concat combination and the Ray Data path on a real local Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from benchmarks.detection_quality import precision_recall
from pipeline.data.pseudo_label_store import PSEUDO_LABEL_SCHEMA, load_label_sets, read_pseudo_labels
from pipeline.data.reader import FrameIndex
from pipeline.data.synthetic import generate
from pipeline.formats.detections import read_json_db
from pipeline.formats.errors import DataError
from pipeline.params import load_params
from pipeline.steps.convert import convert_split
from pipeline.steps.pseudo_labels import run as run_pseudo_labels
from pipeline.steps.pseudo_labels.driver import apply_threshold
from pipeline.steps.pseudo_labels.sources import parse_sources

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "pld.threshold=0.05",  # the paper's (the cpu profile raises it)
    "pld.enabled=true",  # the schema's (the cpu profile turns PLD off)
    "synthetic.sequences={train: 2}",
    "synthetic.frames=4",
    "synthetic.width=96",
    "synthetic.height=64",
    "data.eval_size=64",
    "data.eval_max_size=96",
    "pseudo_labels.workers=1",
    "pseudo_labels.sources=[]",  # each test names what it generates through pld.sources
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A converted 2-sequence × 4-frame synthetic train split (raw MOTChallenge tree kept too)."""
    root = tmp_path_factory.mktemp("tiny")
    params = load_params(REPO / "params.yaml", TINY)
    generate(params.synthetic, root / "raw", progress=False)
    convert_split(
        root / "raw",
        "train",
        "synthetic",
        root / "clips" / "train",
        dataset="synthetic",
        row_group_frames=2,
        lenient=False,
        progress=False,
    )
    return root


def _params(*extra):
    return load_params(REPO / "params.yaml", TINY + list(extra))


def _run(tiny, tmp_path, *extra, **kwargs):
    return run_pseudo_labels(
        _params(*extra),
        clips_dir=tiny / "clips",
        out_root=tmp_path / "pl",
        summary_path=tmp_path / "summary.json",
        plot_path=tmp_path / "scores.png",
        progress=False,
        **kwargs,
    )


def _gt(tiny) -> dict:
    """Ground truth xyxy per frame, straight from the raw gt.txt files (not via the code under test)."""
    truth: dict = {}
    for seq_dir in sorted((tiny / "raw" / "train").iterdir()):
        for line in (seq_dir / "gt" / "gt.txt").read_text().splitlines():
            f, _, x, y, w, h, consider = (float(v) for v in line.split(",")[:7])
            if consider:
                truth.setdefault((seq_dir.name, int(f)), []).append([x, y, x + w, y + h])
    return {k: (np.asarray(v, np.float32), np.ones(len(v), np.float32)) for k, v in truth.items()}


def _sorted(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes.T[::-1])]


def test_gt_source_copies_ground_truth_with_confidence_one(tiny, tmp_path):
    manifest = _run(tiny, tmp_path, "pld.sources=[gt]")
    out = tmp_path / "pl" / "train"
    table = pq.read_table(out / "pseudo_labels.parquet")
    assert table.schema.equals(PSEUDO_LABEL_SCHEMA)
    assert table.num_rows == 8  # every frame of the split, one row per frame and source
    labels = read_pseudo_labels(out)
    truth = _gt(tiny)
    assert set(truth) <= set(labels)
    for key, (boxes, _) in truth.items():
        np.testing.assert_allclose(_sorted(labels[key][0]), _sorted(boxes), atol=1e-3)
        assert (labels[key][1] == 1.0).all()
    assert manifest["sources"]["gt"]["boxes"] == sum(len(b) for b, _ in truth.values())
    from pipeline.data.pseudo_label_store import check_sources

    check_sources(out, ["gt"])
    with pytest.raises(DataError, match=r"pld.sources \['detector'\] not generated"):
        check_sources(out, ["gt", "detector"])
    # a threshold at or above the stage's reads a subset of what it wrote; below it, boxes are missing
    written_at = manifest["threshold"]
    check_sources(out, ["gt"], threshold=written_at)
    check_sources(out, ["gt"], threshold=written_at + 0.1)
    with pytest.raises(
        DataError, match=rf"written at score ≥ {written_at}, but pld.threshold is 0.01"
    ) as error:
        check_sources(out, ["gt"], threshold=0.01)
    assert error.value.field == "threshold" and "re-run the pseudo_labels stage" in str(error.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sources"]["gt"]["score_histogram"]["counts"][-1] == manifest["sources"]["gt"]["boxes"]
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_is_byte_identical(tiny, tmp_path):
    _run(tiny, tmp_path, "pld.sources=[gt, detfile]")
    out = tmp_path / "pl" / "train"
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    first_summary = (tmp_path / "summary.json").read_bytes()
    _run(tiny, tmp_path, "pld.sources=[gt, detfile]")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert (tmp_path / "summary.json").read_bytes() == first_summary
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_threshold_drops_0_04_keeps_0_05():
    boxes = np.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12]], np.float32)
    scores = np.asarray([0.04, 0.05, 0.9], np.float32)
    kept_boxes, kept_scores = apply_threshold({("s", 1): (boxes, scores)}, 0.05)[("s", 1)]
    assert kept_scores.tolist() == pytest.approx([0.05, 0.9])
    np.testing.assert_array_equal(kept_boxes, boxes[1:])


def _write_det_tree(tiny, tmp_path, rows_by_seq: dict[str, list[str]]) -> Path:
    root = tmp_path / "dets" / "train"
    for seq, rows in rows_by_seq.items():
        (root / seq / "det").mkdir(parents=True)
        (root / seq / "det" / "det.txt").write_text("".join(r + "\n" for r in rows))
    return root


def test_detfile_motchallenge_threshold_and_values(tiny, tmp_path):
    root = _write_det_tree(
        tiny,
        tmp_path,
        {
            "syn-train-01": [
                "1,-1,10,20,30,40,0.04,-1,-1,-1",
                "1,-1,5,6,7,8,0.05,-1,-1,-1",
                "3,-1,1,2,3,4,0.9,-1,-1,-1",
            ]
        },
    )
    _run(
        tiny, tmp_path, "pld.sources=[detfile:yolox]", f"pseudo_labels.detfile={{yolox: {{path: '{root}'}}}}"
    )
    labels = read_pseudo_labels(tmp_path / "pl" / "train")
    boxes, scores = labels[("syn-train-01", 1)]
    np.testing.assert_allclose(boxes, [[5, 6, 12, 14]])  # x, y, w, h → x1, y1, x2, y2; the 0.04 box dropped
    assert scores.tolist() == pytest.approx([0.05])
    assert len(labels[("syn-train-01", 2)][0]) == 0
    manifest = json.loads((tmp_path / "pl" / "train" / "manifest.json").read_text())
    assert manifest["sources"]["detfile:yolox"]["sequences_without_detections"] == ["syn-train-02"]


def test_detfile_unknown_frame_names_file_and_line(tiny, tmp_path):
    root = _write_det_tree(tiny, tmp_path, {"syn-train-01": ["1,-1,1,2,3,4,0.9", "99,-1,1,2,3,4,0.9"]})
    with pytest.raises(DataError) as error:
        _run(tiny, tmp_path, "pld.sources=[detfile]", f"pseudo_labels.detfile={{a: {{path: '{root}'}}}}")
    assert error.value.line == 2 and error.value.file.endswith("syn-train-01/det/det.txt")
    assert "frame 99" in str(error.value)


def test_detfile_unknown_sequence_names_file(tiny, tmp_path):
    root = _write_det_tree(tiny, tmp_path, {"syn-train-07": ["1,-1,1,2,3,4,0.9"]})
    with pytest.raises(DataError, match=r"syn-train-07/det/det.txt.*sequence 'syn-train-07' is not in"):
        _run(tiny, tmp_path, "pld.sources=[detfile]", f"pseudo_labels.detfile={{a: {{path: '{root}'}}}}")


def test_json_db_parsing_motrv2_keys(tiny, tmp_path):
    index = FrameIndex.load(tiny / "clips" / "train")
    db = {
        "Synthetic/train/syn-train-01/img1/00000001.txt": ["10.5,20,30,40,0.98\n", "1,1,2,2,0.5\n"],
        "Synthetic/train/syn-train-02/img1/00000004.txt": [],
        "Synthetic/val/syn-val-01/img1/00000001.txt": ["1,1,2,2,0.5\n"],  # another split: outside the prefix
    }
    path = tmp_path / "det_db.json"
    path.write_text(json.dumps(db))
    dets, skipped = read_json_db(path, index, key_prefix="Synthetic/train/")
    assert skipped == 1
    boxes, scores = dets[("syn-train-01", 1)]
    np.testing.assert_allclose(boxes, [[10.5, 20, 40.5, 60], [1, 1, 3, 3]])
    np.testing.assert_allclose(scores, [0.98, 0.5])
    assert len(dets[("syn-train-02", 4)][0]) == 0
    # without the prefix the val key is an unknown sequence: an error naming file and key
    with pytest.raises(DataError, match=r"det_db.json: key 'Synthetic/val/syn-val-01/img1/00000001.txt'"):
        read_json_db(path, index)
    db_bad_frame = {"x/syn-train-01/img1/00000009.txt": []}
    path.write_text(json.dumps(db_bad_frame))
    with pytest.raises(DataError, match="frame 9 of sequence 'syn-train-01'"):
        read_json_db(path, index)
    path.write_text(json.dumps({"x/syn-train-01/img1/00000001.txt": ["1,2,3"]}))
    with pytest.raises(DataError, match=r"\[0\]: expected at least 5"):
        read_json_db(path, index)


@pytest.fixture(scope="module")
def mot17(tmp_path_factory):
    """A hand-written MOT17-layout tree (one sequence in -DPM and -SDP copies, 3 frames), converted."""
    import cv2

    root = tmp_path_factory.mktemp("mot17")
    image = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))[1].tobytes()
    for detector, score in (("DPM", -0.3), ("SDP", 0.8)):
        seq = root / "raw" / "train" / f"MOT17-02-{detector}"
        (seq / "img1").mkdir(parents=True)
        (seq / "gt").mkdir()
        (seq / "det").mkdir()
        (seq / "seqinfo.ini").write_text(
            "[Sequence]\nname=MOT17-02\nimDir=img1\nframeRate=30\nseqLength=3\nimWidth=60\nimHeight=40\nimExt=.jpg\n"
        )
        for frame in (1, 2, 3):
            (seq / "img1" / f"{frame:06d}.jpg").write_bytes(image)
        (seq / "gt" / "gt.txt").write_text("1,1,10,10,8,16,1,1,1.0\n2,1,11,10,8,16,1,1,1.0\n")
        (seq / "det" / "det.txt").write_text(f"1,-1,9,9,9,17,{score},-1,-1,-1\n")
    convert_split(
        root / "raw",
        "train",
        "mot17",
        root / "clips" / "train",
        dataset="mot17",
        row_group_frames=2,
        lenient=False,
        progress=False,
    )
    return root


def test_detfile_mot17_copies_need_and_use_det_source(mot17, tmp_path):
    index = FrameIndex.load(mot17 / "clips" / "train")
    assert list(index.frames) == ["MOT17-02"]
    from pipeline.formats.detections import read_motchallenge_dets

    with pytest.raises(DataError, match="set det_source to DPM, FRCNN or SDP"):
        read_motchallenge_dets(mot17 / "raw" / "train", index)
    dets = read_motchallenge_dets(mot17 / "raw" / "train", index, det_source="SDP")
    np.testing.assert_allclose(dets[("MOT17-02", 1)][0], [[9, 9, 18, 26]])
    assert dets[("MOT17-02", 1)][1].tolist() == pytest.approx([0.8])
    path = tmp_path / "db.json"
    path.write_text(
        json.dumps(
            {
                "MOT17/train/MOT17-02-SDP/img1/000002.txt": ["1,2,3,4,0.6\n"],
                "MOT17/train/MOT17-02-DPM/img1/000002.txt": ["1,2,3,4,-0.2\n"],
            }
        )
    )
    dets, skipped = read_json_db(path, index, det_source="SDP")
    assert skipped == 1 and dets[("MOT17-02", 2)][1].tolist() == pytest.approx([0.6])
    with pytest.raises(
        DataError, match="db.json: key 'MOT17/train/MOT17-02-DPM/img1/000002.txt'.*det_source"
    ):
        read_json_db(path, index)


def test_parallel_combination_keeps_sources_apart(tiny, tmp_path):
    root = _write_det_tree(tiny, tmp_path, {"syn-train-01": ["2,-1,5,6,7,8,0.7"]})
    _run(
        tiny, tmp_path, "pld.sources=[gt, detfile:sdp]", f"pseudo_labels.detfile={{sdp: {{path: '{root}'}}}}"
    )
    out = tmp_path / "pl" / "train"
    assert sorted(set(pq.read_table(out / "pseudo_labels.parquet").column("source").to_pylist())) == [
        "detfile:sdp",
        "gt",
    ]
    truth = _gt(tiny)
    parallel = load_label_sets(out, ["gt", "detfile:sdp"], 0.05, "parallel")
    (gt_boxes, gt_scores), (det_boxes, det_scores) = parallel[("syn-train-01", 2)]
    np.testing.assert_allclose(_sorted(gt_boxes), _sorted(truth[("syn-train-01", 2)][0]), atol=1e-3)
    np.testing.assert_allclose(det_boxes, [[5, 6, 12, 14]])
    assert det_scores.tolist() == pytest.approx([0.7])
    ((concat_boxes, concat_scores),) = load_label_sets(out, ["gt", "detfile:sdp"], 0.05, "concat")[
        ("syn-train-01", 2)
    ]
    assert len(concat_boxes) == len(gt_boxes) + 1 and concat_scores[-1] == pytest.approx(0.7)


def test_bare_detfile_reads_public_detections_of_the_dataset(tiny, tmp_path):
    _run(tiny, tmp_path, "pld.sources=[detfile]")
    labels = read_pseudo_labels(tmp_path / "pl" / "train", sources=["detfile"])
    rows = [
        r.split(",")
        for r in (tiny / "raw" / "train" / "syn-train-01" / "det" / "det.txt").read_text().splitlines()
    ]
    expect = np.asarray(
        [[float(v) for v in r[2:7]] for r in rows if int(r[0]) == 3 and float(r[6]) >= 0.05], np.float32
    )
    boxes, scores = labels[("syn-train-01", 3)]
    np.testing.assert_allclose(
        _sorted(np.c_[boxes, scores]),
        _sorted(np.c_[expect[:, :2], expect[:, :2] + expect[:, 2:4], expect[:, 4]]),
        atol=1e-3,
    )


def test_generated_sources_are_the_union():
    from pipeline.steps.pseudo_labels.sources import generated_sources

    params = _params("pseudo_labels.sources=[detector, gt]", "pld.sources=[gt, detfile]")
    assert generated_sources(params) == ["detector", "gt", "detfile"]


def test_source_names_are_validated():
    params = _params()
    with pytest.raises(ValueError, match="unknown kind 'yolo'"):
        parse_sources(["yolo"], params.pseudo_labels)
    with pytest.raises(ValueError, match="no pseudo_labels.detfile.x"):
        parse_sources(["detfile:x"], params.pseudo_labels)
    with pytest.raises(ValueError, match="twice"):
        parse_sources(["gt", "gt"], params.pseudo_labels)


def _tiny_detector(path: Path) -> None:
    import motrv3
    from tests.model_configs import tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(
        backbone="resnet18",
        dec_layers=1,
        dim_feedforward=32,
        enc_n_points=1,
        dec_n_points=1,
        num_queries=6,
        num_feature_levels=2,
        deform_attn_impl="auto",
    )
    model = motrv3.build_model(cfg)
    with torch.no_grad():  # lift the focal prior (p = 0.01) so a random model's scores straddle the threshold
        for head in model.class_embed:
            head.bias.fill_(-1.0)
    motrv3.save_checkpoint(path, model, {"model": motrv3.config.to_dict(cfg)})


def test_detector_source_random_model(tiny, tmp_path):
    checkpoint = tmp_path / "detector.pt"
    _tiny_detector(checkpoint)
    manifest = _run(
        tiny, tmp_path, "pld.sources=[detector]", f"pseudo_labels.detector_checkpoint={checkpoint}"
    )
    labels = read_pseudo_labels(tmp_path / "pl" / "train")
    assert len(labels) == 8
    boxes = np.concatenate([b for b, _ in labels.values()])
    scores = np.concatenate([s for _, s in labels.values()])
    assert manifest["sources"]["detector"]["boxes"] == len(scores) > 0  # bias −1: scores ≈ 0.27 > 0.05
    assert (scores >= 0.05).all() and (scores <= 1).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    # the stored labels are motrv3.detect's output on the decoded frame, thresholded
    import motrv3
    from pipeline.data.images import decode_image as decode_rgb
    from pipeline.data.reader import DatasetReader

    model, _ = motrv3.load_checkpoint(checkpoint)
    frame = DatasetReader(tiny / "clips" / "train").frames("syn-train-02", [2])[0]
    expect_boxes, expect_scores = motrv3.detect(model, decode_rgb(frame.image), 64, 96)
    keep = expect_scores >= 0.05
    got_boxes, got_scores = labels[("syn-train-02", frame.frame)]
    np.testing.assert_allclose(got_boxes, expect_boxes[keep].numpy(), atol=1e-3)
    np.testing.assert_allclose(got_scores, expect_scores[keep].numpy(), atol=1e-6)


def test_teacher_source_sees_frames_at_its_own_size_and_is_scored(tiny, tmp_path):
    """`teacher` (PLD's teacher, stages.train_teacher): a detector source with its own checkpoint and
    the `teacher` sections' eval size; the summary scores every source against the ground truth."""
    checkpoint = tmp_path / "teacher.pt"
    _tiny_detector(checkpoint)
    _run(
        tiny,
        tmp_path,
        "pld.sources=[teacher, gt]",
        f"pseudo_labels.teacher_checkpoint={checkpoint}",
        "teacher.data.eval_size=80",  # the trackers' eval size stays 64
        "teacher.data.eval_max_size=120",
    )
    labels = read_pseudo_labels(tmp_path / "pl" / "train", sources=["teacher"])
    import motrv3
    from pipeline.data.images import decode_image as decode_rgb
    from pipeline.data.reader import DatasetReader

    model, _ = motrv3.load_checkpoint(checkpoint)
    frame = DatasetReader(tiny / "clips" / "train").frames("syn-train-01", [1])[0]
    expect_boxes, expect_scores = motrv3.detect(model, decode_rgb(frame.image), 80, 120)
    keep = expect_scores >= 0.05
    got_boxes, got_scores = labels[("syn-train-01", frame.frame)]
    np.testing.assert_allclose(got_scores, expect_scores[keep].numpy(), atol=1e-6)
    np.testing.assert_allclose(got_boxes, expect_boxes[keep].numpy(), atol=1e-3)
    summary = json.loads((tmp_path / "summary.json").read_text())["sources"]
    assert summary["gt"]["against_gt"]["recall@0.05"] == summary["gt"]["against_gt"]["precision@0.5"] == 100.0
    teacher = summary["teacher"]["against_gt"]
    assert {"AP50", "precision@0.05", "recall@0.4", "recall@0.5"} <= set(teacher)
    assert teacher["detections"] == sum(len(s) for _, s in labels.values())


def test_teacher_quality_hand_case():
    """Two targets; a hit at 0.9, a false positive at 0.6, a duplicate of the hit at 0.3."""
    from pipeline.steps.pseudo_labels.driver import teacher_quality

    truth = {("s", 1): (np.asarray([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.ones(2, np.float32))}
    dets = {
        ("s", 1): (
            np.asarray([[0, 0, 10, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32),
            np.asarray([0.9, 0.6, 0.3], np.float32),
        )
    }
    quality = teacher_quality(dets, truth, {}, 0.2)
    assert quality["AP50"] == pytest.approx(50.0)  # precision 1 up to recall 0.5, nothing after
    assert [k for k in quality if k.startswith("recall")] == [
        "recall@0.2",
        "recall@0.3",
        "recall@0.4",
        "recall@0.5",
    ]
    assert quality["precision@0.3"] == pytest.approx(100 / 3) and quality["recall@0.3"] == pytest.approx(50.0)
    assert quality["precision@0.5"] == pytest.approx(50.0) and quality["recall@0.5"] == pytest.approx(50.0)


def test_torchvision_source_random_fasterrcnn(tiny, tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3
    )
    torch.save(model.state_dict(), tmp_path / "frcnn.pt")
    spec = f"{{frcnn: {{arch: fasterrcnn_mobilenet_v3_large_320_fpn, checkpoint: '{tmp_path / 'frcnn.pt'}', num_classes: 3, person_class: 2, min_size: 64, max_size: 96}}}}"
    _run(tiny, tmp_path, "pld.sources=[torchvision:frcnn]", f"pseudo_labels.torchvision={spec}")
    table = pq.read_table(tmp_path / "pl" / "train" / "pseudo_labels.parquet")
    assert table.num_rows == 8 and set(table.column("source").to_pylist()) == {"torchvision:frcnn"}
    scores = np.concatenate(
        [np.asarray(s, np.float32) for s in table.column("scores").to_pylist()] + [np.zeros(0)]
    )
    assert (scores >= np.float32(0.05)).all()


@pytest.mark.slow
def test_ray_data_path_matches_in_process(tiny, tmp_path):
    """Two Ray Data workers on a real local Ray give the same labels as the in-process run."""
    import ray

    checkpoint = tmp_path / "detector.pt"
    _tiny_detector(checkpoint)
    common = [
        "pld.sources=[detector]",
        f"pseudo_labels.detector_checkpoint={checkpoint}",
        "pseudo_labels.batch_size=3",
    ]
    _run(tiny, tmp_path / "local", *common)
    assert not ray.is_initialized()
    _run(tiny, tmp_path / "ray", *common, "pseudo_labels.workers=2")
    assert not ray.is_initialized()  # the run stopped the instance it started
    local = read_pseudo_labels(tmp_path / "local" / "pl" / "train")
    distributed = read_pseudo_labels(tmp_path / "ray" / "pl" / "train")
    assert local.keys() == distributed.keys()
    for key in local:
        np.testing.assert_allclose(distributed[key][0], local[key][0], atol=1e-3)
        np.testing.assert_allclose(distributed[key][1], local[key][1], atol=1e-5)


def test_precision_recall_hand_case():
    truth = {("s", 1): (np.asarray([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.ones(2, np.float32))}
    pred = {
        ("s", 1): (
            np.asarray([[0, 0, 10, 11], [50, 50, 60, 60], [20, 20, 30, 30]], np.float32),
            np.asarray([0.9, 0.8, 0.3], np.float32),
        )
    }
    result = precision_recall(pred, truth, 0.5, 0.5)  # the 0.3 box is below the score cut
    assert result["precision"] == pytest.approx(0.5) and result["recall"] == pytest.approx(0.5)


def test_stage_help(capsys):
    from stages.pseudo_labels import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--params" in out and "--split" in out


def test_stage_writes_its_outputs(tiny, tmp_path, monkeypatch, capsys):
    from stages.pseudo_labels import main

    shutil.copytree(tiny / "clips", tmp_path / "data" / "clips")
    monkeypatch.chdir(tmp_path)
    args = ["--params", str(REPO / "params.yaml"), "--no-progress"] + [
        f"--set={o}" for o in TINY + ["pld.sources=[gt]"]
    ]
    main(args)
    assert "gt: " in capsys.readouterr().out
    assert (tmp_path / "data" / "pseudo_labels" / "train" / "pseudo_labels.parquet").is_file()
    assert json.loads((tmp_path / "metrics" / "pseudo_labels.json").read_text())["sources"]["gt"]["boxes"] > 0
    assert (tmp_path / "metrics" / "pseudo_labels_scores.png").is_file()
    with pytest.raises(SystemExit, match="error: .*unknown kind 'yolo'"):
        main(args + ["--set", "pld.sources=[yolo]"])
