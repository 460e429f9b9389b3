"""`dataset.split_mode: half`: MOT17's train sequences cut into a train half and a val half
(CenterTrack/ByteTrack's protocol), converted from the original images and scored with TrackEval."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.data.reader import DatasetReader, export_motchallenge_gt
from pipeline.data.sequences import half_cut, read_split, take_half
from pipeline.formats import motchallenge
from pipeline.formats.errors import DataError, Issues
from pipeline.params import load_params
from pipeline.steps import convert, evaluate
from tests.test_data_helpers import write_sequence

REPO = Path(__file__).resolve().parents[1]
LENGTHS = {"MOT17-02": 7, "MOT17-04": 6}  # cut after frame 4 in both: val halves of 3 and 2 frames
DETECTORS = {"DPM": 0.3, "FRCNN": 0.9, "SDP": 0.6}


def gt_rows(sequence: str, length: int) -> list[tuple]:
    """frame, id, x, y, w, h, consider, class, visibility: pedestrians in both halves, distractors."""
    rows = []
    for f in range(1, length + 1):
        rows.append((f, 1, 2 + f, 4, 10, 20, 1, 1, 1))
        if sequence == "MOT17-02":
            rows.append((f, 2, 30, 10 + f % 3, 12, 24, 1, 1, 0.5))
            if f % 2:
                rows.append((f, 3, 50, 20, 8, 16, 0, 7, 1))  # static person: a distractor
        elif f >= 5:
            rows.append((f, 5, 40, 12, 10, 22, 1, 1, 1))  # only in the val half
            rows.append((f, 6, 52, 2, 8, 10, 0, 1, 1))  # class 1 not to be considered
    return rows


def mot17_tree(root: Path) -> Path:
    """`root/train/MOT17-0N-{DPM,FRCNN,SDP}`: the same images and gt three times, detections apart."""
    for seq_index, (sequence, length) in enumerate(LENGTHS.items()):
        for detector, score in DETECTORS.items():
            dets = [(f, -1, 2 + f, 4, 10, 20, score) for f in range(1, length + 1)]
            write_sequence(
                root / "train" / f"{sequence}-{detector}",
                frames=length,
                gt_rows=gt_rows(sequence, length),
                det_rows=dets,
                seed=seq_index,  # one seed per sequence: the copies' images are identical
            )
    return root


def half_params(root: Path, *extra: str):
    return load_params(
        REPO / "params.yaml",
        [
            "dataset.name=mot17",
            f"dataset.root={root}",
            "dataset.split_mode=half",
            "dataset.test_split=null",
            "data.row_group_frames=2",
            *extra,
        ],
    )


def files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def converted(tmp_path):
    raw = mot17_tree(tmp_path / "MOT17")
    before = files_under(raw)
    manifests = convert.run(half_params(raw), tmp_path / "clips", progress=False)
    assert files_under(raw) == before  # nothing written into the input tree
    return raw, tmp_path / "clips", manifests


def test_half_cut_is_bytetracks():
    # CenterTrack/ByteTrack: train frames 1..⌊n/2⌋+1 (MOT17-02: 301 of 600), val the rest.
    assert [half_cut(n) for n in (600, 1050, 837, 7, 6)] == [301, 526, 419, 4, 4]


def test_convert_halves_frame_counts_renumbering_and_original_images(converted):
    raw, clips, manifests = converted
    assert sorted(manifests) == ["train", "val"] and not (raw / "val").exists()
    for split, frames in (("train", {"MOT17-02": 4, "MOT17-04": 4}), ("val", {"MOT17-02": 3, "MOT17-04": 2})):
        entries = manifests[split]["sequences"]
        assert {name: e["frames"] for name, e in entries.items()} == frames
        for name, entry in entries.items():
            assert (entry["first_frame"], entry["last_frame"]) == (1, frames[name])
            assert entry["frame_offset"] == (0 if split == "train" else 4)
            assert entry["source"] == f"train/{name}-DPM"  # the detector copies stored once
            assert entry["det_sources"] == ["DPM", "FRCNN", "SDP"]
        # No image copies: the split folder holds the Parquet files and the manifest, nothing else.
        assert sorted(p.name for p in (clips / split).iterdir()) == sorted(
            ["manifest.json", *(e["file"] for e in entries.values())]
        )

    # Val frame k is source frame 4 + k: its image file, bytes, gt and detections.
    table = pq.read_table(clips / "val" / "MOT17-02.parquet", columns=["frame", "file_name"])
    assert table.column("frame").to_pylist() == [1, 2, 3]
    assert table.column("file_name").to_pylist() == [f"img1/00000{f}.jpg" for f in (5, 6, 7)]
    source = raw / "train" / "MOT17-02-DPM"
    source_gt = gt_rows("MOT17-02", 7)
    for frame in DatasetReader(clips / "val").iter_sequence("MOT17-02"):
        original = frame.frame + 4
        assert bytes(frame.image) == (source / "img1" / f"{original:06d}.jpg").read_bytes()
        expected = sorted(r for r in source_gt if r[0] == original)
        assert frame.orig_ids.tolist() == [r[1] for r in expected]
        assert frame.boxes.tolist() == [list(map(float, r[2:6])) for r in expected]
        assert frame.classes.tolist() == [r[7] for r in expected]
        assert sorted(zip(frame.det_sources, frame.det_scores.tolist(), strict=True)) == sorted(
            DETECTORS.items()
        )
        assert frame.det_boxes.tolist() == [[2.0 + original, 4.0, 10.0, 20.0]] * 3
    train = [f.frame for f in DatasetReader(clips / "train").iter_sequence("MOT17-04")]
    assert train == [1, 2, 3, 4]


def val_half_results(raw: Path, results: Path, renumber: bool = True) -> None:
    """Perfect results: the counted pedestrians of the val half's gt, read from the original gt.txt."""
    results.mkdir(parents=True, exist_ok=True)
    for sequence, length in LENGTHS.items():
        cut = half_cut(length)
        info = motchallenge.read_seqinfo(raw / "train" / f"{sequence}-FRCNN" / "seqinfo.ini")
        rows = motchallenge.read_gt(raw / "train" / f"{sequence}-FRCNN" / "gt" / "gt.txt", info, "mot17")
        rows = rows[(rows[:, 0] > cut) & (rows[:, 6] == 1) & (rows[:, 7] == 1)]
        if renumber:
            rows[:, 0] -= cut
        motchallenge.write_results(results / f"{sequence}.txt", rows[:, :7])


def test_evaluate_scores_the_val_half_against_its_own_gt(converted, tmp_path):
    raw, clips, _ = converted
    params = half_params(raw)
    exported = tmp_path / "exported"
    assert export_motchallenge_gt(clips / "val", exported) == ["MOT17-02", "MOT17-04"]
    for sequence, length in (("MOT17-02", 3), ("MOT17-04", 2)):
        info = motchallenge.read_seqinfo(exported / sequence / "seqinfo.ini")
        assert info.length == length  # the val half's own length, as its results files count
        gt = motchallenge.read_gt(exported / sequence / "gt" / "gt.txt", info, "mot17")
        assert sorted(set(gt[:, 0].astype(int))) == list(range(1, length + 1))

    results = tmp_path / "results"
    val_half_results(raw, results)
    evaluation = evaluate.run(params, results, clips / "val", metrics_dir=tmp_path / "metrics", stem="m")
    overall = evaluation.overall
    assert evaluation.benchmark == "MOT17"
    assert overall["HOTA"] == pytest.approx(100.0) and overall["MOTA"] == pytest.approx(100.0)
    assert overall["IDF1"] == pytest.approx(100.0) and overall["IDS"] == 0
    assert overall["CLR_Frames"] == 5  # 3 + 2 frames: TrackEval saw the val halves only
    assert overall["GT_Dets"] == 3 * 2 + 2 * 2  # counted pedestrians of frames 5..7 and 5..6
    assert (tmp_path / "metrics" / "m.json").is_file()

    # Results numbered as the source frames (5..7) do not fit the val half: an error, not a score.
    val_half_results(raw, tmp_path / "source_numbered", renumber=False)
    with pytest.raises(DataError, match="outside the sequence") as caught:
        evaluate.run(params, tmp_path / "source_numbered", clips / "val", metrics_dir=tmp_path / "m2")
    assert caught.value.field == "frame"


def test_half_mode_params_and_short_sequences(tmp_path):
    raw = tmp_path / "MOT17"
    assert convert.splits_of(half_params(raw)) == {"train": ("train", "train"), "val": ("train", "val")}
    full = convert.splits_of(load_params(REPO / "params.yaml", ["dataset.name=mot17"]))
    assert full == {"train": ("train", None), "val": ("val", None), "test": ("test", None)}
    with pytest.raises(DataError, match="also train_split") as caught:
        convert.splits_of(half_params(raw, "dataset.eval_split=train"))
    assert caught.value.field == "dataset.eval_split"

    # Two frames leave the val half empty: an error naming seqinfo.ini's seqLength.
    write_sequence(raw / "train" / "MOT17-09-FRCNN", frames=2, gt_rows=[(1, 1, 5, 6, 10, 20, 1, 1, 1)])
    (sequence,) = read_split(raw, "train", "mot17", Issues())
    assert [f.frame for f in take_half(sequence, "train").frames] == [1, 2]
    with pytest.raises(DataError, match="too short") as caught:
        take_half(sequence, "val")
    assert caught.value.field == "seqLength" and caught.value.file.endswith("seqinfo.ini")
