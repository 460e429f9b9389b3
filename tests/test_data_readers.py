"""MOTChallenge / MOT17 / CrowdHuman readers and every bad-input case (strict errors, lenient skips)."""

from __future__ import annotations

import json

import pytest

from pipeline.data.reader import DatasetReader
from pipeline.data.sequences import read_split
from pipeline.formats.errors import DataError, Issues
from pipeline.steps.convert import convert_split
from tests.test_data_helpers import GT_ROWS, rows_text, write_crowdhuman, write_sequence


def _convert(root, tmp_path, lenient, benchmark="dancetrack", **kwargs):
    return convert_split(
        root,
        "train",
        benchmark,
        tmp_path / "out" / "train",
        dataset=benchmark,
        row_group_frames=2,
        lenient=lenient,
        progress=False,
        **kwargs,
    )


BAD_GT = [
    ("malformed", "1,1,5,6,ten,20,1,1,1\n", 1, "bb_width", "malformed_row"),
    ("too_few_fields", "1,1,5,6\n", 1, "row", "malformed_row"),
    ("zero_width", "1,1,5,6,10,20,1,1,1\n2,1,5,6,0,20,1,1,1\n", 2, "bb_width", "bad_box"),
    ("negative_height", "1,1,5,6,10,-3,1,1,1\n", 1, "bb_height", "bad_box"),
    ("wholly_outside", "1,1,5,6,10,20,1,1,1\n3,1,70,6,10,20,1,1,1\n", 2, "bbox", "bad_box"),
    ("frame_out_of_range", "9,1,5,6,10,20,1,1,1\n", 1, "frame", "malformed_row"),
    ("visibility", "1,1,5,6,10,20,1,1,1.5\n", 1, "visibility", "malformed_row"),
    ("duplicate_id", "1,1,5,6,10,20,1,1,1\n1,1,7,6,10,20,1,1,1\n", 2, "id", "duplicate_id"),
]


@pytest.mark.parametrize("name,text,line,field,kind", BAD_GT, ids=[c[0] for c in BAD_GT])
def test_bad_gt_row_strict_names_file_line_field_and_lenient_skips(tmp_path, name, text, line, field, kind):
    write_sequence(tmp_path / "train" / "seq", gt_rows="1,2,30,10,12,24,1,1,1\n" + text)
    with pytest.raises(DataError) as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    error = caught.value
    assert error.file.endswith("gt/gt.txt") and error.line == line + 1 and error.field == field
    assert f"gt.txt:{line + 1}: {field}:" in str(error)

    manifest = _convert(tmp_path, tmp_path, lenient=True)
    skipped = manifest["skipped"]
    assert skipped["counts"] == {kind: 1} and skipped["items"][0]["line"] == line + 1
    good_rows = text.count("\n") - 1 + 1  # the valid rows of `text` plus the first row
    assert manifest["totals"]["objects"] == good_rows


def test_missing_frame(tmp_path):
    seq = write_sequence(tmp_path / "train" / "seq")
    (seq / "img1" / "000003.jpg").unlink()
    with pytest.raises(DataError) as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.file.endswith("img1/000003.jpg") and caught.value.field == "frame"
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert manifest["sequences"]["seq"]["frames"] == 3
    # The frame and its gt row are both reported, never dropped silently.
    assert manifest["skipped"]["counts"] == {"missing_frame": 1, "orphan_row": 1}


def test_corrupt_jpeg(tmp_path):
    seq = write_sequence(tmp_path / "train" / "seq")
    data = (seq / "img1" / "000002.jpg").read_bytes()
    (seq / "img1" / "000002.jpg").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="corrupt JPEG") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.file.endswith("000002.jpg") and caught.value.field == "image"
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert manifest["skipped"]["counts"] == {"corrupt_image": 1}
    assert DatasetReader(tmp_path / "out" / "train").file("seq").frame_numbers.tolist() == [1, 3, 4]


def test_missing_seqinfo(tmp_path):
    write_sequence(tmp_path / "train" / "good")
    seq = write_sequence(tmp_path / "train" / "seq", seed=1)
    (seq / "seqinfo.ini").unlink()
    with pytest.raises(DataError) as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.file.endswith("seq/seqinfo.ini") and caught.value.field == "seqinfo.ini"
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert list(manifest["sequences"]) == ["good"] and manifest["skipped"]["counts"] == {"bad_seqinfo": 1}


def test_seqlength_disagrees_with_images(tmp_path):
    write_sequence(
        tmp_path / "train" / "seq", seqinfo={"seqLength": 3}, gt_rows=[r for r in GT_ROWS if r[0] <= 3]
    )
    with pytest.raises(DataError) as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    error = caught.value
    assert error.file.endswith("seqinfo.ini") and error.field == "seqLength" and error.line == 5
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert (
        manifest["skipped"]["counts"] == {"seqinfo_mismatch": 1}
        and manifest["sequences"]["seq"]["frames"] == 3
    )


def test_imwidth_disagrees_with_jpeg(tmp_path):
    write_sequence(tmp_path / "train" / "seq", seqinfo={"imWidth": 80})
    with pytest.raises(DataError, match="imWidth=80") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.field == "imWidth" and caught.value.file.endswith("000001.jpg")
    write_sequence(tmp_path / "train" / "good", seed=2)
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert manifest["skipped"]["counts"] == {"empty_sequence": 1, "size_mismatch": 4}
    assert list(manifest["sequences"]) == ["good"]


def test_empty_sequence(tmp_path):
    seq = write_sequence(tmp_path / "train" / "seq", frames=0, seqinfo={"seqLength": 0}, gt_rows=None)
    assert not any((seq / "img1").iterdir())
    with pytest.raises(DataError, match="empty sequence") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.field == "seqLength"


def test_mot17_rules_and_three_copies_merge_with_detections_apart(tmp_path):
    gt = [
        (1, 1, 5, 6, 10, 20, 1, 1, 1),  # pedestrian, counted
        (1, 2, 20, 6, 10, 20, 0, 1, 1),  # pedestrian not to consider → ignore
        (1, 3, 30, 6, 10, 20, 0, 7, 1),  # static person → ignore
        (2, 4, 30, 6, 10, 20, 0, 8, 0.2),  # distractor → ignore
        (2, 5, 30, 6, 10, 20, 0, 3, 1),  # car: not a person → ignore
    ]
    for detector, score in (("DPM", 0.1), ("FRCNN", 0.9), ("SDP", 0.5)):
        write_sequence(
            tmp_path / "train" / f"MOT17-02-{detector}",
            frames=2,
            gt_rows=gt,
            det_rows=[(1, -1, 5, 6, 10, 20, score)],
        )
    sequences = read_split(tmp_path, "train", "mot17", Issues())
    assert [s.name for s in sequences] == ["MOT17-02"]
    frame = sequences[0].frames[0]
    assert [(o.track_id, o.ignore) for o in frame.objects] == [(1, False), (2, True), (3, True)]
    assert sorted((d.source, d.score) for d in frame.detections) == [
        ("DPM", 0.1),
        ("FRCNN", 0.9),
        ("SDP", 0.5),
    ]

    manifest = _convert(tmp_path, tmp_path, lenient=False, benchmark="mot17")
    assert manifest["sequences"]["MOT17-02"]["det_sources"] == ["DPM", "FRCNN", "SDP"]
    stored = DatasetReader(tmp_path / "out" / "train").frames("MOT17-02", [0, 1])
    assert sorted(zip(stored[0].det_sources, stored[0].det_scores.tolist(), strict=True)) == [
        ("DPM", 0.1),
        ("FRCNN", 0.9),
        ("SDP", 0.5),
    ]
    assert stored[1].ignore.tolist() == [True, True] and stored[1].classes.tolist() == [8, 3]


def test_mot17_copies_with_different_gt_are_an_error(tmp_path):
    write_sequence(tmp_path / "train" / "MOT17-04-DPM", frames=2, gt_rows=[GT_ROWS[0]])
    write_sequence(tmp_path / "train" / "MOT17-04-SDP", frames=2, gt_rows=[GT_ROWS[1]])
    with pytest.raises(DataError, match="share ground truth") as caught:
        read_split(tmp_path, "train", "mot17", Issues())
    assert caught.value.file.endswith("MOT17-04-SDP/gt/gt.txt")


def test_dancetrack_rows_must_be_class_1(tmp_path):
    write_sequence(tmp_path / "train" / "dancetrack0001", gt_rows=rows_text([(1, 1, 5, 6, 10, 20, 1, 2, 1)]))
    with pytest.raises(DataError) as caught:
        read_split(tmp_path, "train", "dancetrack", Issues())
    assert caught.value.field == "class" and caught.value.line == 1


def test_crowdhuman_reading(tmp_path):
    root = write_crowdhuman(tmp_path / "ch")
    write_sequence(tmp_path / "mot" / "train" / "seq")
    manifest = convert_split(
        tmp_path / "mot",
        "train",
        "mot17",
        tmp_path / "out",
        dataset="mot17",
        row_group_frames=2,
        lenient=True,
        crowdhuman_root=root,
        progress=False,
    )
    entry = manifest["sequences"]["crowdhuman-train"]
    assert entry["static"] and entry["frames"] == 2 and entry["objects"] == 3  # the mask tag is not read
    assert (
        manifest["skipped"]["total"] == 0 and "crowdhuman-val" not in manifest["sequences"]
    )  # no val file: fine
    frames = DatasetReader(tmp_path / "out").frames("crowdhuman-train", [0, 1])
    assert (frames[0].width, frames[0].height) == (64, 48)  # img_a sorts first
    assert frames[0].boxes.tolist() == [[-5, 0, 20, 40]] and frames[0].ignore.tolist() == [False]
    assert frames[1].ignore.tolist() == [False, True] and frames[1].visibility.tolist() == [0.5, 1.0]
    all_ids = [*frames[0].ids, *frames[1].ids]
    assert len(set(all_ids)) == 3 and min(all_ids) > max(
        DatasetReader(tmp_path / "out").frames("seq", [0])[0].ids
    )


def test_crowdhuman_bad_line_names_line_and_field(tmp_path):
    root = write_crowdhuman(tmp_path / "ch")
    path = root / "annotation_train.odgt"
    path.write_text(
        path.read_text() + '{"ID": "img_a", "gtboxes": [{"tag": "person", "fbox": [1, 2, 0, 5]}]}\n'
    )
    from pipeline.data.crowdhuman import read_crowdhuman

    with pytest.raises(DataError) as caught:
        read_crowdhuman(root, "train", Issues())
    assert caught.value.line == 3 and caught.value.field == "gtboxes[0].fbox"
    assert json.loads(path.read_text().splitlines()[2])["ID"] == "img_a"
