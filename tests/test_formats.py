"""Text files saved by common editors (UTF-8 byte-order mark, CRLF line ends) are read like any other,
by every reader of pipeline/formats; what is really malformed is still rejected, naming file, line
and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.reader import FrameIndex
from pipeline.formats import motchallenge
from pipeline.formats.detections import read_det_txt, read_json_db
from pipeline.formats.errors import DataError, Issues

BOM = "\ufeff"


def windows(text: str) -> bytes:
    """`text` as a Windows editor saves it: byte-order mark, CRLF line ends."""
    return (BOM + text.replace("\n", "\r\n")).encode("utf-8")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


SEQINFO = "[Sequence]\nname=seq\nimDir=img1\nframeRate=25\nseqLength=3\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
GT = "1,1,5,6,10,20,1,1,1\n2,1,6,6,10,20,1,1,0.5\n"
DET = "1,-1,5,6,10,20,0.9,-1,-1,-1\n3,-1,7,6,10,20,0.4,-1,-1,-1\n"
RESULTS = "1,1,5.00,6.00,10.00,20.00,0.9000,-1,-1,-1\n2,1,6.00,6.00,10.00,20.00,0.8000,-1,-1,-1\n"


def index(tmp_path: Path) -> FrameIndex:
    """A converted split of one 3-frame sequence, as the detection readers see it."""
    frames = {"seq": np.array([1, 2, 3])}
    return FrameIndex(tmp_path, frames, {"seq": False}, {"seq": (64, 48)}, {})


def test_seqinfo_with_bom_and_crlf(tmp_path):
    plain = motchallenge.read_seqinfo(write(tmp_path / "a" / "seqinfo.ini", SEQINFO.encode()))
    edited = motchallenge.read_seqinfo(write(tmp_path / "b" / "seqinfo.ini", windows(SEQINFO)))
    assert edited.length == plain.length == 3 and edited.width == 64 and edited.frame_rate == 25.0
    assert edited.name == "seq" and edited.im_ext == ".jpg"  # no stray "\r" in text values
    bad = write(tmp_path / "c" / "seqinfo.ini", windows(SEQINFO.replace("seqLength=3", "seqLength=three")))
    with pytest.raises(DataError, match=r"seqinfo.ini:5: seqLength: not a number"):
        motchallenge.read_seqinfo(bad)


def test_dataset_gt_and_det_rows_with_bom_and_crlf(tmp_path):
    info = motchallenge.read_seqinfo(
        write(tmp_path / "seqinfo.ini", windows(SEQINFO)), ("imWidth", "imHeight")
    )
    gt = motchallenge.read_gt_rows(write(tmp_path / "gt.txt", windows(GT)), info, "dancetrack", Issues())
    assert [(r.frame, r.track_id, r.visibility) for r in gt] == [(1, 1, 1.0), (2, 1, 0.5)]
    det = motchallenge.read_det_rows(write(tmp_path / "det.txt", windows(DET)), info, "det", Issues())
    assert [(r.frame, r.score) for r in det] == [(1, 0.9), (3, 0.4)]
    with pytest.raises(DataError) as caught:
        motchallenge.read_gt_rows(
            write(tmp_path / "bad.txt", windows(GT + "3,1,5,6,ten,20,1,1,1\n")), info, "dancetrack", Issues()
        )
    assert caught.value.line == 3 and caught.value.field == "bb_width"


def test_results_and_scoring_gt_with_bom_and_crlf(tmp_path):
    results = motchallenge.read_results(write(tmp_path / "seq.txt", windows(RESULTS)), seq_length=3)
    assert results.shape == (2, 10) and results[:, 0].tolist() == [1, 2]
    info = motchallenge.SeqInfo("seq", 3, 64, 48)
    gt = motchallenge.read_gt(write(tmp_path / "gt.txt", windows(GT)), info)
    assert gt.shape == (2, 9) and gt[1, 8] == 0.5
    with pytest.raises(DataError, match=r"seq2\.txt:2: frame: 4 is outside the sequence"):
        motchallenge.read_results(write(tmp_path / "seq2.txt", windows(RESULTS.replace("2,1,6", "4,1,6"))), 3)
    with pytest.raises(DataError, match=r"not UTF-8 text"):
        motchallenge.read_results(write(tmp_path / "seq3.txt", b"\xff\xfe1\x00,\x001\x00"), 3)


def test_det_txt_for_pseudo_labels_with_bom_and_crlf(tmp_path):
    dets = read_det_txt(write(tmp_path / "det.txt", windows(DET)), "seq", index(tmp_path))
    boxes, scores = dets[("seq", 1)]
    assert boxes.tolist() == [[5, 6, 15, 26]] and scores.tolist() == pytest.approx([0.9])
    with pytest.raises(DataError, match=r"det2.txt:2: score: not a number"):
        read_det_txt(write(tmp_path / "det2.txt", windows(DET.replace("0.4", "x"))), "seq", index(tmp_path))


def test_json_detection_db_with_bom_and_crlf(tmp_path):
    db = {"Synthetic/train/seq/img1/00000002.txt": ["5,6,10,20,0.7\r\n"]}
    path = write(tmp_path / "db.json", windows(json.dumps(db, indent=1)))
    dets, skipped = read_json_db(path, index(tmp_path))
    assert skipped == 0 and dets[("seq", 2)][0].tolist() == [[5, 6, 15, 26]]
    bad = write(
        tmp_path / "bad.json", windows(json.dumps({"Synthetic/train/seq/img1/00000002.txt": ["5,6,10"]}))
    )
    with pytest.raises(DataError, match=r"\[0\]: expected at least 5"):
        read_json_db(bad, index(tmp_path))
