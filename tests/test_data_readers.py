"""MOTChallenge / MOT17 / CrowdHuman readers and every bad-input case (strict errors, lenient skips)."""

from __future__ import annotations

import errno
import json
import math

import pytest

from pipeline.data.crowdhuman import read_crowdhuman
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
    path.write_text(path.read_text().replace('"fbox": [-5, 0, 20, 40]', '"fbox": [1, 2, 0, 5]'))
    with pytest.raises(DataError) as caught:
        read_crowdhuman(root, "train", Issues())
    assert caught.value.line == 2 and caught.value.field == "gtboxes[0].fbox"
    assert json.loads(path.read_text().splitlines()[1])["ID"] == "img_a"
    path.write_text(path.read_text() + '{"ID": "img_b", "gtboxes": []}\n')
    issues = Issues(lenient=True)
    read_crowdhuman(root, "train", issues)
    assert [(e.line, e.field, e.kind) for e in issues.skipped] == [
        (2, "gtboxes[0].fbox", "bad_box"),
        (3, "ID", "duplicate_id"),
    ]


# ---- issue 23: readers that crashed, dropped or disagreed


def _odgt_line(root, text: bytes) -> None:
    with open(root / "annotation_train.odgt", "ab") as handle:
        handle.write(text + b"\n")


BAD_CROWDHUMAN = [
    ("gtboxes_not_a_list", b'{"ID": "img_c", "gtboxes": "person"}', "gtboxes", "malformed_row"),
    ("box_not_an_object", b'{"ID": "img_c", "gtboxes": ["person"]}', "gtboxes[0]", "malformed_row"),
    (
        "fbox_three_numbers",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3]}]}',
        "gtboxes[0].fbox",
        "malformed_row",
    ),
    (
        "fbox_nan",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [NaN, 2, 3, 4]}]}',
        "gtboxes[0].fbox",
        "malformed_row",
    ),
    (
        "fbox_infinity",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [1, 2, Infinity, 4]}]}',
        "gtboxes[0].fbox",
        "malformed_row",
    ),
    (
        "fbox_beyond_float",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [1, 2, 1' + b"0" * 400 + b", 4]}]}",
        "gtboxes[0].fbox",
        "malformed_row",
    ),
    (
        "fbox_boolean",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [true, 2, 3, 4]}]}',
        "gtboxes[0].fbox",
        "malformed_row",
    ),
    (
        "vbox_two_numbers",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4], "vbox": [1, 2]}]}',
        "gtboxes[0].vbox",
        "malformed_row",
    ),
    (
        "extra_not_an_object",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4], "extra": 1}]}',
        "gtboxes[0].extra",
        "malformed_row",
    ),
    (
        "ignore_not_0_or_1",
        b'{"ID": "img_c", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4], "extra": {"ignore": "0"}}]}',
        "gtboxes[0].extra.ignore",
        "malformed_row",
    ),
    ("id_not_a_name", b'{"ID": "../img_a", "gtboxes": []}', "ID", "malformed_row"),
    ("huge_integer", b'{"ID": "img_c", "n": 1' + b"0" * 5000 + b"}", "json", "malformed_row"),
    ("not_utf8", b'{"ID": "img_\xff"}', "json", "malformed_row"),
]


@pytest.mark.parametrize("name,line,field,kind", BAD_CROWDHUMAN, ids=[c[0] for c in BAD_CROWDHUMAN])
def test_crowdhuman_malformed_entry_is_a_data_error(tmp_path, name, line, field, kind):
    root = write_crowdhuman(tmp_path / "ch")
    (root / "Images" / "img_c.jpg").write_bytes((root / "Images" / "img_a.jpg").read_bytes())
    _odgt_line(root, line)
    with pytest.raises(DataError) as caught:
        read_crowdhuman(root, "train", Issues())
    assert (caught.value.line, caught.value.field, caught.value.kind) == (3, field, kind)
    issues = Issues(lenient=True)
    sequence = read_crowdhuman(root, "train", issues)
    assert [(e.line, e.field) for e in issues.skipped] == [(3, field)]
    boxes = [row.box for frame in sequence.frames for row in frame.objects]
    assert len(boxes) == 3 and all(math.isfinite(v) for box in boxes for v in box)


def test_crowdhuman_truncated_image_fails_at_convert_not_in_training(tmp_path):
    root = write_crowdhuman(tmp_path / "ch")
    image = root / "Images" / "img_b.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 2 // 3])  # the header intact, the scan cut off
    write_sequence(tmp_path / "mot" / "train" / "seq")
    convert = lambda lenient: convert_split(  # noqa: E731
        tmp_path / "mot",
        "train",
        "mot17",
        tmp_path / "out",
        dataset="mot17",
        row_group_frames=2,
        lenient=lenient,
        crowdhuman_root=root,
        progress=False,
    )
    with pytest.raises(DataError, match="corrupt JPEG") as caught:
        convert(False)
    assert caught.value.file.endswith("img_b.jpg") and caught.value.field == "image"
    manifest = convert(True)
    assert manifest["skipped"]["counts"] == {"corrupt_image": 1}
    assert manifest["sequences"]["crowdhuman-train"]["frames"] == 1


def test_empty_png_frame_is_a_data_error_not_a_decoder_crash(tmp_path):
    seq = write_sequence(tmp_path / "train" / "seq", seqinfo={"imExt": ".png"})
    for jpg in (seq / "img1").iterdir():
        jpg.rename(jpg.with_suffix(".png"))  # JPEG bytes under .png: fine, the content decides
    (seq / "img1" / "000002.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty file") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.file.endswith("000002.png") and caught.value.kind == "corrupt_image"
    assert _convert(tmp_path, tmp_path, lenient=True)["skipped"]["counts"] == {"corrupt_image": 1}


def test_gt_txt_that_is_not_a_file_is_not_read_as_unlabelled(tmp_path):
    write_sequence(tmp_path / "train" / "good")
    seq = write_sequence(tmp_path / "train" / "seq", seed=1, gt_rows=None)
    (seq / "gt" / "gt.txt").mkdir(parents=True)
    with pytest.raises(DataError, match="not a readable file") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.file.endswith("seq/gt/gt.txt")
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert list(manifest["sequences"]) == ["good"] and manifest["skipped"]["counts"] == {"unreadable": 1}


def test_sequence_links_that_lead_nowhere_are_named(tmp_path):
    write_sequence(tmp_path / "train" / "good")
    split = tmp_path / "train"
    (split / "broken").symlink_to(tmp_path / "nowhere")
    (split / "loop").symlink_to(split / "loop")
    (split / "README").write_text("not a sequence\n")
    with pytest.raises(DataError, match="symbolic link that leads nowhere") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.file.endswith("train/broken") and caught.value.kind == "bad_link"
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    assert list(manifest["sequences"]) == ["good"]
    named = {item["file"]: item["kind"] for item in manifest["skipped"]["items"]}
    assert named == {"train/README": "not_a_sequence", "train/broken": "bad_link", "train/loop": "bad_link"}
    (split / "broken").unlink()
    (split / "loop").unlink()
    # A plain file is no data: strict mode passes over it too, but names it.
    assert _convert(tmp_path, tmp_path, lenient=False)["skipped"]["counts"] == {"not_a_sequence": 1}


def test_imext_that_matches_no_file_names_imext(tmp_path):
    write_sequence(tmp_path / "train" / "seq", seqinfo={"imExt": ".png"})
    with pytest.raises(DataError, match=r"imExt=\.png but img1 holds no \.png file") as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.field == "imExt" and caught.value.line == 8
    assert caught.value.file.endswith("seq/seqinfo.ini")


def test_windows_imdir_is_read_by_every_reader(tmp_path):
    from pipeline.demo import FrameSource

    seq = write_sequence(tmp_path / "train" / "seq", seqinfo={"imDir": "frames\\img1"})
    (seq / "frames").mkdir()
    (seq / "img1").rename(seq / "frames" / "img1")
    assert _convert(tmp_path, tmp_path, lenient=False)["sequences"]["seq"]["frames"] == 4
    assert FrameSource(seq).length == 4
    write_sequence(tmp_path / "bad" / "seq", seqinfo={"imDir": "..\\elsewhere"})
    with pytest.raises(DataError, match="inside the sequence folder") as caught:
        read_split(tmp_path, "bad", "dancetrack", Issues())
    assert caught.value.field == "imDir"


def test_detections_of_a_missing_frame_are_reported(tmp_path):
    seq = write_sequence(tmp_path / "train" / "seq", det_rows=[(3, -1, 5, 6, 10, 20, 0.9)])
    (seq / "img1" / "000003.jpg").unlink()
    manifest = _convert(tmp_path, tmp_path, lenient=True)
    orphans = [i for i in manifest["skipped"]["items"] if i["kind"] == "orphan_row"]
    assert sorted(i["file"] for i in orphans) == ["train/seq/det/det.txt", "train/seq/gt/gt.txt"]


# ---- issue 23: a full disk names the file being written and leaves nothing behind


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_convert_into_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    write_sequence(tmp_path / "train" / "seq")
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _no_space)
    with pytest.raises(OSError) as caught:
        _convert(tmp_path, tmp_path, lenient=False)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "out" / "train" / "seq.parquet")
    assert "No space left on device" in str(caught.value) and "seq.parquet" in str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_pseudo_labels_into_a_full_disk_name_the_file_and_leave_nothing(tmp_path, monkeypatch):
    from pathlib import Path

    import pipeline.data.pseudo_label_store as store
    from pipeline.params import load_params
    from pipeline.steps.pseudo_labels import run as run_pseudo_labels

    write_sequence(tmp_path / "raw" / "train" / "seq")
    convert_split(
        tmp_path / "raw",
        "train",
        "synthetic",
        tmp_path / "clips" / "train",
        dataset="synthetic",
        row_group_frames=2,
        lenient=False,
        progress=False,
    )
    params = load_params(
        Path(__file__).resolve().parents[1] / "params.yaml",
        ["pld.enabled=true", "pld.sources=[gt]", "pseudo_labels.sources=[]", "pseudo_labels.workers=1"],
    )
    monkeypatch.setattr(store.pq, "write_table", _no_space)
    with pytest.raises(OSError) as caught:
        run_pseudo_labels(
            params,
            clips_dir=tmp_path / "clips",
            out_root=tmp_path / "pl",
            summary_path=tmp_path / "summary.json",
            plot_path=None,
            progress=False,
        )
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "pl" / "train" / "pseudo_labels.parquet")
    assert list((tmp_path / "pl").iterdir()) == [] and not (tmp_path / "summary.json").exists()


def test_files_in_img1_that_are_not_frames_are_named(tmp_path):
    seq = write_sequence(tmp_path / "train" / "seq")
    (seq / "img1" / "Thumbs.db").write_bytes(b"\x00")
    manifest = _convert(tmp_path, tmp_path, lenient=False)
    assert manifest["sequences"]["seq"]["frames"] == 4
    assert [(i["file"], i["kind"]) for i in manifest["skipped"]["items"]] == [
        ("train/seq/img1/Thumbs.db", "not_a_frame")
    ]
