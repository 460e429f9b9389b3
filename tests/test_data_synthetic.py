"""The synthetic benchmark: deterministic bytes, the MOTChallenge layout our reader accepts, its difficulty."""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.data.sequences import read_split
from pipeline.data.synthetic import generate
from pipeline.formats.errors import Issues
from pipeline.params import SyntheticParams


def _small(**changes):
    base = dict(
        sequences={"train": 2, "val": 1}, frames=30, width=96, height=64, min_objects=4, max_objects=5
    )
    base.update(changes)
    return SyntheticParams(**base)


def _digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_runs_give_identical_bytes_and_the_seed_matters(tmp_path):
    generate(_small(), tmp_path / "one", progress=False)
    generate(_small(), tmp_path / "two", progress=False)
    one = _digests(tmp_path / "one")
    assert one == _digests(tmp_path / "two")
    assert "train/syn-train-01/det/det.txt" in one and "val/syn-val-01/img1/000030.jpg" in one
    generate(_small(seed=1), tmp_path / "three", progress=False)
    assert (
        one["train/syn-train-01/img1/000001.jpg"]
        != _digests(tmp_path / "three")["train/syn-train-01/img1/000001.jpg"]
    )


def test_regenerating_with_fewer_sequences_removes_stale_ones(tmp_path):
    generate(_small(), tmp_path, progress=False)
    generate(_small(sequences={"train": 1}), tmp_path, progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")) == ["train/syn-train-01"]


def test_output_reads_back_and_is_hard_enough(tmp_path):
    cfg = _small(sequences={"train": 3}, frames=60, width=320, height=192, min_objects=5, max_objects=8)
    generate(cfg, tmp_path, progress=False)
    sequences = read_split(tmp_path, "train", "synthetic", Issues())  # strict: any bad row would raise
    assert [s.name for s in sequences] == ["syn-train-01", "syn-train-02", "syn-train-03"]
    backgrounds = []
    for sequence in sequences:
        rows = [o for f in sequence.frames for o in f.objects]
        heights = np.array([o.box[3] for o in rows])
        assert heights.min() >= 0.12 * 192 * 0.9 and heights.max() <= 0.3 * 192 * 1.1  # 20-60 px boxes
        # Occlusion happens and is recorded: some targets partly hidden.
        assert min(o.visibility for o in rows) < 0.5
        # Identities cross: some pair of targets overlaps in some frame.
        assert any(
            _overlap(a.box, b.box) > 0.3
            for f in sequence.frames
            for a in f.objects
            for b in f.objects
            if a.track_id < b.track_id
        )
        dets = [d for f in sequence.frames for d in f.detections]
        assert 0.5 * len(rows) < len(dets) < 1.5 * len(rows) and {d.source for d in dets} == {"det"}
        backgrounds.append(sequence.frames[0].image_path.read_bytes())
    assert len(set(backgrounds)) == 3
    # Entries and exits: across the split, some target starts after frame 1 or ends before the last.
    spans = [
        (min(o.frame for o in rows), max(o.frame for o in rows))
        for s in sequences
        for rows in _by_id(s).values()
    ]
    assert any(first > 1 or last < 60 for first, last in spans)


def _by_id(sequence):
    tracks = {}
    for frame in sequence.frames:
        for row in frame.objects:
            tracks.setdefault(row.track_id, []).append(row)
    return tracks


def _overlap(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax2, bx2) - max(a[0], b[0])) * max(0, min(ay2, by2) - max(a[1], b[1]))
    return inter / min(a[2] * a[3], b[2] * b[3])
