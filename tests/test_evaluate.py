"""Evaluation with the real TrackEval package, MOT file validation and submission archives."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from pipeline.cli import main as cli_main
from pipeline.evaluation.submission import make_submission
from pipeline.evaluation.trackeval_runner import (
    discover_sequences,
    evaluate_folder,
    write_metrics_json,
    write_per_sequence_csv,
)
from pipeline.formats import motchallenge
from pipeline.formats.errors import DataError

# Boxes far apart (IoU 0 between objects), so every match is unambiguous.
BOX = {1: (10.0, 20.0, 30.0, 60.0), 2: (200.0, 40.0, 30.0, 60.0), 3: (100.0, 120.0, 40.0, 50.0)}


def write_sequence(root: Path, name: str, length: int, rows: list[tuple], labelled: bool = True) -> None:
    """MOTChallenge GT layout; rows are (frame, id, class[, conf])."""
    seq = root / name
    (seq / "gt").mkdir(parents=True)
    motchallenge.write_seqinfo(seq / "seqinfo.ini", motchallenge.SeqInfo(name, length, 320, 192, 20.0))
    if not labelled:
        return
    lines = []
    for row in rows:
        frame, obj, cls = row[:3]
        conf = row[3] if len(row) > 3 else 1
        x, y, w, h = BOX[obj]
        lines.append(f"{frame},{obj},{x},{y},{w},{h},{conf},{cls},1.0")
    (seq / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")


def write_result(results: Path, name: str, rows: list[tuple]) -> None:
    """rows: (frame, track id, object whose box it reports)."""
    results.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{f},{tid},{BOX[obj][0]},{BOX[obj][1]},{BOX[obj][2]},{BOX[obj][3]},0.9,-1,-1,-1"
        for f, tid, obj in rows
    ]
    (results / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_perfect_tracker_scores_100(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq-a", 6, [(f, o, 1) for f in range(1, 7) for o in (1, 2)])
    write_sequence(gt, "seq-b", 4, [(f, 3, 1) for f in range(1, 5)] + [(f, 1, 1) for f in (2, 3)])
    for seq in discover_sequences(gt):
        # the ground truth itself, copied as results
        rows = motchallenge.read_gt(seq.gt_file, seq.info)
        (results).mkdir(exist_ok=True)
        motchallenge.write_results(results / f"{seq.name}.txt", rows[:, [0, 1, 2, 3, 4, 5, 6]])
    evaluation = evaluate_folder(gt, results, "synthetic")
    for key in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"):
        assert evaluation.overall[key] == pytest.approx(100.0), key
    assert evaluation.overall["IDS"] == 0
    assert evaluation.overall["FP"] == 0 and evaluation.overall["FN"] == 0
    assert evaluation.overall["GT_Dets"] == 6 * 2 + 4 + 2
    assert set(evaluation.per_sequence) == {"seq-a", "seq-b"}
    assert evaluation.per_sequence["seq-b"]["HOTA"] == pytest.approx(100.0)

    write_metrics_json(evaluation, tmp_path / "metrics" / "m.json", FPS=12.5)
    metrics = json.loads((tmp_path / "metrics" / "m.json").read_text())
    assert list(metrics)[:6] == ["HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS"]
    assert metrics["FPS"] == 12.5 and metrics["HOTA"] == pytest.approx(100.0)
    write_per_sequence_csv(evaluation, tmp_path / "metrics" / "m.csv")
    lines = (tmp_path / "metrics" / "m.csv").read_text().splitlines()
    assert lines[0].startswith("sequence,HOTA,AssA") and [ln.split(",")[0] for ln in lines[1:]] == [
        "seq-a",
        "seq-b",
        "COMBINED",
    ]


def test_identity_swap_moves_ids_idf1_assa_by_hand(tmp_path):
    """Two objects over 5 frames; the tracker's two identities swap objects at frame 4.

    By hand (every box exact, so all 19 α thresholds agree):
    - CLEAR: frame 4 re-matches both objects to the other identity → IDS = 2, MOTA = 1 − 2/10 = 80 %.
    - Identity: the best one-to-one identity matching keeps 3 frames per object: IDTP = 6, IDFP = IDFN = 4,
      IDF1 = 2·6 / (2·6 + 4 + 4) = 60 %.
    - HOTA: DetA = 100 %. A TP pairing (object, identity) that lasts 3 frames has
      A = TPA / (TPA + FNA + FPA) = 3 / (3 + 2 + 2) = 3/7 (6 such TPs); one lasting 2 frames has 2 / (2 + 3 + 3) = 1/4
      (4 TPs). AssA = (6·3/7 + 4·1/4) / 10 = 5/14, HOTA = sqrt(DetA·AssA) = sqrt(5/14).
    """
    gt, perfect, swapped = tmp_path / "gt", tmp_path / "perfect", tmp_path / "swapped"
    write_sequence(gt, "swap", 5, [(f, o, 1) for f in range(1, 6) for o in (1, 2)])
    write_result(perfect, "swap", [(f, o, o) for f in range(1, 6) for o in (1, 2)])
    write_result(swapped, "swap", [(f, o if f < 4 else 3 - o, o) for f in range(1, 6) for o in (1, 2)])

    base = evaluate_folder(gt, perfect, "DanceTrack").overall
    swap = evaluate_folder(gt, swapped, "DanceTrack").overall
    assert base["IDS"] == 0 and base["IDF1"] == pytest.approx(100.0) and base["AssA"] == pytest.approx(100.0)
    assert swap["IDS"] == 2
    assert swap["MOTA"] == pytest.approx(80.0)
    assert swap["IDTP"] == 6 and swap["IDFP"] == 4 and swap["IDFN"] == 4
    assert swap["IDF1"] == pytest.approx(60.0)
    assert swap["DetA"] == pytest.approx(100.0)
    assert swap["AssA"] == pytest.approx(100.0 * 5 / 14)
    assert swap["AssA"] < base["AssA"]
    assert swap["HOTA"] == pytest.approx(100.0 * (5 / 14) ** 0.5)


def test_other_trackers_large_identity_numbers_score_like_small_ones(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq", 3, [(f, o, 1) for f in (1, 2, 3) for o in (1, 2)])
    write_result(results, "seq", [(f, 10**12 + o, o) for f in (1, 2, 3) for o in (1, 2)])
    overall = evaluate_folder(gt, results).overall
    assert overall["HOTA"] == pytest.approx(100.0) and overall["IDs"] == 2


def test_mot17_removes_boxes_on_distractors_class_one_only_does_not(tmp_path):
    """MOT17 preprocessing drops a tracker box matched to a distractor (class 8); custom counts it as FP.

    DanceTrack's gt has class 1 rows only: a class 8 row there is an error, as in the converter.
    """
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "MOT17-02-FRCNN", 3, [(f, 1, 1) for f in (1, 2, 3)] + [(f, 2, 8) for f in (1, 2, 3)])
    write_result(results, "MOT17-02-FRCNN", [(f, o, o) for f in (1, 2, 3) for o in (1, 2)])
    mot17 = evaluate_folder(gt, results, "MOT17").overall
    class_one = evaluate_folder(gt, results, "custom").overall
    assert mot17["FP"] == 0 and mot17["MOTA"] == pytest.approx(100.0)
    assert class_one["FP"] == 3 and class_one["MOTA"] == pytest.approx(0.0)
    with pytest.raises(DataError, match=r"gt\.txt:4: class: dancetrack gt rows are all class 1, got 8"):
        evaluate_folder(gt, results, "DanceTrack")


def test_malformed_row_names_file_and_line(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq", 3, [(f, 1, 1) for f in (1, 2, 3)])
    write_result(results, "seq", [(1, 1, 1), (2, 1, 1), (3, 1, 1)])
    path = results / "seq.txt"
    lines = path.read_text().splitlines()
    lines[1] = "2,1,10,20,abc,60,0.9,-1,-1,-1"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"seq\.txt:2: bb_width: not a number"):
        evaluate_folder(gt, results)
    lines[1] = "2,1,10,20"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"seq\.txt:2: row: expected 7 to 10"):
        evaluate_folder(gt, results)


def test_frame_outside_sequence_and_duplicate_id_are_errors(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq", 3, [(f, 1, 1) for f in (1, 2, 3)])
    write_result(results, "seq", [(1, 1, 1), (4, 1, 1)])
    with pytest.raises(DataError, match=r"seq\.txt:2: frame: 4 is outside the sequence \(1\.\.3\)"):
        evaluate_folder(gt, results)
    write_result(results, "seq", [(1, 1, 1), (1, 1, 2)])
    with pytest.raises(DataError, match=r"seq\.txt:2: id: identity 1 appears twice in frame 1"):
        evaluate_folder(gt, results)


def test_missing_sequence_is_an_error_not_a_zero(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq-a", 3, [(f, 1, 1) for f in (1, 2, 3)])
    write_sequence(gt, "seq-b", 3, [(f, 1, 1) for f in (1, 2, 3)])
    write_result(results, "seq-a", [(f, 1, 1) for f in (1, 2, 3)])
    with pytest.raises(motchallenge.MissingSequenceError, match=r"seq-b"):
        evaluate_folder(gt, results)


def test_submission_archives_have_the_server_file_names(tmp_path):
    mot17_gt, results = tmp_path / "mot17", tmp_path / "results"
    # one detector copy's name, and the merged base name our converter gives MOT17 sequences
    for name in ("MOT17-01-FRCNN", "MOT17-03"):
        write_sequence(mot17_gt, name, 3, [], labelled=False)
        write_result(results, name, [(1, 1, 1), (3, 2, 2)])
    archive = tmp_path / "mot17.zip"
    make_submission(results, discover_sequences(mot17_gt), "MOT17", archive)
    with zipfile.ZipFile(archive) as bundle:
        names = sorted(bundle.namelist())
        assert names == sorted(f"MOT17-{n}-{d}.txt" for n in ("01", "03") for d in ("DPM", "FRCNN", "SDP"))
        assert bundle.read("MOT17-01-SDP.txt") == bundle.read("MOT17-01-FRCNN.txt")
        first = bundle.read("MOT17-01-DPM.txt").decode().splitlines()[0]
        assert first == "1,1,10.00,20.00,30.00,60.00,0.9000,-1,-1,-1"

    dance_gt = tmp_path / "dance"
    for name in ("dancetrack0003", "dancetrack0009"):
        write_sequence(dance_gt, name, 3, [], labelled=False)
        write_result(results, name, [(2, 5, 3)])
    archive = tmp_path / "dance.zip"
    make_submission(results, discover_sequences(dance_gt), "DanceTrack", archive)
    with zipfile.ZipFile(archive) as bundle:
        assert sorted(bundle.namelist()) == ["dancetrack0003.txt", "dancetrack0009.txt"]

    write_sequence(dance_gt, "dancetrack0011", 3, [], labelled=False)
    with pytest.raises(motchallenge.MissingSequenceError, match="dancetrack0011"):
        make_submission(results, discover_sequences(dance_gt), "DanceTrack", tmp_path / "bad.zip")
    assert not (tmp_path / "bad.zip").exists()


def test_cli_scores_other_trackers_and_zips_test_splits(tmp_path, capsys):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq", 4, [(f, 1, 1) for f in range(1, 5)])
    write_result(results, "seq", [(f, 7, 1) for f in range(1, 4)])  # misses frame 4
    cli_main(["evaluate", "--gt", str(gt), "--results", str(results), "--json", str(tmp_path / "m.json")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["FN"] == 1 and metrics["MOTA"] == pytest.approx(75.0)
    assert "COMBINED" in capsys.readouterr().out

    test_gt = tmp_path / "test_gt"
    write_sequence(test_gt, "seq", 4, [], labelled=False)
    cli_main(["evaluate", "--gt", str(test_gt), "--results", str(results), "--benchmark", "DanceTrack"])
    with zipfile.ZipFile(tmp_path / "results.zip") as bundle:
        assert bundle.namelist() == ["seq.txt"]

    (results / "seq.txt").write_text("1,7,10,20\n")
    with pytest.raises(SystemExit, match=r"seq\.txt:1"):
        cli_main(["evaluate", "--gt", str(gt), "--results", str(results)])


# ---- issue 23: nothing left out of the score silently; gt read as the converter reads it


def test_gt_folder_without_seqinfo_is_an_error_not_left_out(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq-a", 3, [(f, 1, 1) for f in (1, 2, 3)])
    write_sequence(gt, "seq-b", 3, [(f, 1, 1) for f in (1, 2, 3)])
    (gt / "seq-b" / "seqinfo.ini").unlink()
    (gt / "notes.txt").write_text("a plain file is not a sequence\n")
    write_result(results, "seq-a", [(f, 1, 1) for f in (1, 2, 3)])
    with pytest.raises(DataError, match=r"seq-b/seqinfo\.ini: seqinfo\.ini: missing"):
        evaluate_folder(gt, results)
    (gt / "seq-c").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"seq-c: sequence: symbolic link that leads nowhere"):
        discover_sequences(gt)


def test_result_file_of_an_unknown_sequence_is_an_error(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt, "seq-a", 3, [(f, 1, 1) for f in (1, 2, 3)])
    write_result(results, "seq-a", [(f, 1, 1) for f in (1, 2, 3)])
    write_result(results, "seq-typo", [(1, 1, 1)])
    with pytest.raises(
        DataError, match=r"seq-typo\.txt: sequence: no sequence 'seq-typo' in the ground truth"
    ):
        evaluate_folder(gt, results)
    # Named sequences score only those; other files are not looked at.
    assert evaluate_folder(gt, results, sequences=["seq-a"]).overall["HOTA"] == pytest.approx(100.0)


def test_gt_txt_that_is_not_a_file_is_an_error(tmp_path):
    gt = tmp_path / "gt"
    write_sequence(gt, "seq", 3, [], labelled=False)
    (gt / "seq" / "gt" / "gt.txt").mkdir()
    with pytest.raises(DataError, match=r"seq/gt/gt\.txt: gt: not a readable file"):
        discover_sequences(gt)


GT_AGREEMENT = [
    ("valid", "1,1,10,20,30,60,1,1,1.0", None),
    ("seven_values", "1,1,10,20,30,60,1", None),
    ("zero_width", "1,1,10,20,0,60,1,1,1.0", "bb_width"),
    ("visibility_above_one", "1,1,10,20,30,60,1,1,1.5", "visibility"),
    ("consider_flag_2", "1,1,10,20,30,60,2,1,1.0", "consider"),
    ("ten_values", "1,1,10,20,30,60,1,1,1.0,-1", "row"),
    ("wholly_outside", "1,1,400,20,30,60,1,1,1.0", "bbox"),
    ("frame_zero", "0,1,10,20,30,60,1,1,1.0", "frame"),
]


@pytest.mark.parametrize("name,row,field", GT_AGREEMENT, ids=[c[0] for c in GT_AGREEMENT])
def test_convert_and_evaluate_accept_the_same_gt_rows(tmp_path, name, row, field):
    from pipeline.formats.errors import Issues

    write_sequence(tmp_path, "seq", 3, [])
    path = tmp_path / "seq" / "gt" / "gt.txt"
    path.write_text(row + "\n")
    info = motchallenge.read_seqinfo(tmp_path / "seq" / "seqinfo.ini")
    outcomes = []
    for read in (
        lambda: motchallenge.read_gt_rows(path, info, "synthetic", Issues()),  # the converter's
        lambda: motchallenge.read_gt(path, info, "synthetic"),  # evaluate's
    ):
        try:
            outcomes.append(len(read()))
        except DataError as error:
            outcomes.append(error.field)
    assert outcomes == [1, 1] if field is None else outcomes == [field, field]
