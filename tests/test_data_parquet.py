"""Parquet clip datasets: lossless round trip, byte-identical re-runs, atomicity, the manifest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.data import parquet_io
from pipeline.data.parquet_io import read_manifest
from pipeline.data.pseudo_label_store import read_pseudo_labels, write_pseudo_labels
from pipeline.data.reader import DatasetReader, export_motchallenge_gt, iter_frames, list_sequences
from pipeline.formats.errors import DataError
from pipeline.steps.convert import convert_split
from tests.test_data_helpers import write_sequence

GT_A = [
    (1, 1, 5, 6, 10, 20, 1, 1, 1),
    (1, 2, 30.25, 10, 12, 24, 1, 1, 0.5),
    (2, 2, -4, 10, 12, 24, 1, 1, 0.75),
    (3, 1, 7, 7, 10.5, 20, 1, 1, 1),
]
GT_B = [(1, 7, 1, 1, 8, 8, 1, 1, 1), (2, 7, 2, 2, 8, 8, 1, 1, 0.25)]


def _tree(root):
    write_sequence(root / "train" / "seq-a", frames=3, gt_rows=GT_A, det_rows=[(1, -1, 5, 6, 10, 20, 0.75)])
    write_sequence(root / "train" / "seq-b", frames=2, gt_rows=GT_B, seed=1)
    return root


def _convert(root, out):
    return convert_split(
        root,
        "train",
        "dancetrack",
        out,
        dataset="dancetrack",
        row_group_frames=2,
        lenient=False,
        progress=False,
    )


def _parse(path):
    return sorted(tuple(float(v) for v in line.split(",")) for line in path.read_text().splitlines())


def test_round_trip_gives_identical_gt_rows_and_image_bytes(tmp_path):
    root = _tree(tmp_path / "raw")
    manifest = _convert(root, tmp_path / "clips")
    assert manifest["totals"] == {
        "sequences": 2,
        "frames": 5,
        "objects": 6,
        "counted_objects": 6,
        "id_end": 11,
        "class_objects": {"1": 6},  # gt rows per class id
    }
    assert manifest["classes"] == {"1": "pedestrian"}  # the default single class
    assert list_sequences(tmp_path / "clips") == ["seq-a", "seq-b"]
    # Identities unique within the dataset (seq-b offset past seq-a's largest id), originals kept.
    frames = DatasetReader(tmp_path / "clips").frames("seq-b", [0])
    assert frames[0].ids.tolist() == [7 + 3] and frames[0].orig_ids.tolist() == [7]

    for name in ("seq-a", "seq-b"):
        for number, image, row in iter_frames(tmp_path / "clips", name):
            source = root / "train" / name / "img1" / f"{number:06d}.jpg"
            assert bytes(row.image) == source.read_bytes()  # lossless: the original bytes
            assert image.shape == (48, 64, 3) and image.dtype == np.uint8

    written = export_motchallenge_gt(tmp_path / "clips", tmp_path / "gt")
    assert written == ["seq-a", "seq-b"]
    for name in written:
        assert _parse(tmp_path / "gt" / name / "gt" / "gt.txt") == _parse(
            root / "train" / name / "gt" / "gt.txt"
        )
        info = (tmp_path / "gt" / name / "seqinfo.ini").read_text()
        assert f"seqLength={3 if name == 'seq-a' else 2}" in info and "imWidth=64" in info


def test_rerun_is_byte_identical(tmp_path):
    root = _tree(tmp_path / "raw")
    _convert(root, tmp_path / "one")
    _convert(root, tmp_path / "two")
    _convert(root, tmp_path / "one")  # over an existing dataset, too

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    assert digests(tmp_path / "one") == digests(tmp_path / "two")
    assert sorted(digests(tmp_path / "one")) == ["manifest.json", "seq-a.parquet", "seq-b.parquet"]


def test_killed_conversion_leaves_no_manifest(tmp_path, monkeypatch):
    root = _tree(tmp_path / "raw")
    calls = {"n": 0}
    original = parquet_io._write_sequence

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(parquet_io, "_write_sequence", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        _convert(root, tmp_path / "clips")
    assert not (tmp_path / "clips").exists()
    assert not list(tmp_path.glob("**/manifest.json"))
    assert not list(tmp_path.glob(".clips*"))  # the temporary folder is cleaned up too


def test_readers_refuse_incomplete_or_tampered_datasets(tmp_path):
    root = _tree(tmp_path / "raw")
    _convert(root, tmp_path / "clips")
    read_manifest(tmp_path / "clips", verify_checksums=True)
    data = bytearray((tmp_path / "clips" / "seq-a.parquet").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "clips" / "seq-a.parquet").write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        read_manifest(tmp_path / "clips", verify_checksums=True)
    (tmp_path / "clips" / "seq-b.parquet").write_bytes(b"short")
    with pytest.raises(DataError, match="another size"):
        read_manifest(tmp_path / "clips")
    (tmp_path / "clips" / "manifest.json").unlink()
    with pytest.raises(DataError, match="incomplete") as caught:
        DatasetReader(tmp_path / "clips")
    assert caught.value.field == "manifest"


def test_row_groups_stream_in_frames_of_row_group_frames(tmp_path):
    write_sequence(tmp_path / "raw" / "train" / "seq", frames=5, gt_rows=[])
    _convert(tmp_path / "raw", tmp_path / "clips")
    handle = DatasetReader(tmp_path / "clips").file("seq")
    assert handle.starts.tolist() == [0, 2, 4, 5]
    assert handle.locate(3) == (1, 1)


def test_pseudo_labels_round_trip_threshold_and_sources(tmp_path):
    rows = [
        {
            "sequence": "s",
            "frame": 1,
            "boxes": [[0, 0, 10, 10], [5, 5, 9, 9]],
            "scores": [0.9, 0.01],
            "source": "detector",
        },
        {"sequence": "s", "frame": 1, "boxes": [[1, 1, 4, 4]], "scores": [0.5], "source": "detfile"},
        {"sequence": "s", "frame": 2, "boxes": [], "scores": [], "source": "detector"},
    ]
    write_pseudo_labels(rows, tmp_path / "pl" / "labels.parquet")
    labels = read_pseudo_labels(tmp_path / "pl", threshold=0.05)
    boxes, scores = labels[("s", 1)]
    assert sorted(scores.tolist()) == pytest.approx([0.5, 0.9]) and boxes.shape == (2, 4)
    assert labels[("s", 2)][0].shape == (0, 4)
    only = read_pseudo_labels(tmp_path / "pl", threshold=0.0, sources=["detector"])
    assert only[("s", 1)][1].tolist() == pytest.approx([0.9, 0.01])
