"""The track stage end to end: tiny converted synthetic split + tiny random checkpoint → results + fps.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.formats import motchallenge
from pipeline.params import resolve

TINY_SYNTHETIC = [
    "synthetic.sequences={val: 2}",
    "synthetic.frames=5",
    "synthetic.width=96",
    "synthetic.height=64",
    "synthetic.min_objects=2",
    "synthetic.max_objects=3",
]
TINY_MODEL = [
    "model.backbone=resnet18",
    "model.deform_attn_impl=pytorch",  # no extension build in tests
    "model.d_model=32",
    "model.nheads=2",
    "model.enc_layers=1",
    "model.dec_layers=2",
    "model.dim_feedforward=64",
    "model.enc_n_points=1",
    "model.dec_n_points=1",
    "model.num_queries=8",
    "data.eval_size=64",
    "data.eval_max_size=96",
    "tracking.new_track_score=0.0",  # random weights: let every detect query become a track
    "tracking.keep_track_score=0.0",
    "track.cpus_per_worker=1",  # one torch thread: far faster than two on a shared 2-core machine
    "track.device=cpu",
]


def tiny_params(*extra: str):
    return resolve({}, [*TINY_SYNTHETIC, *TINY_MODEL, *extra])


def make_synthetic_split(root: Path, params, split: str = "val") -> tuple[Path, Path]:
    """Raw MOTChallenge-layout synthetic sequences and their converted Parquet split."""
    from pipeline.data.synthetic import generate
    from pipeline.steps.convert import convert_split

    raw = root / "raw"
    generate(params.synthetic, raw, progress=False)
    clips = root / "clips" / split
    convert_split(
        raw,
        split,
        "synthetic",
        clips,
        dataset="synthetic",
        row_group_frames=params.data.row_group_frames,
        lenient=False,
        progress=False,
    )
    return raw / split, clips


def make_checkpoint(path: Path, params) -> Path:
    """A randomly initialised tiny model saved in our checkpoint format."""
    import torch

    import motrv3

    torch.manual_seed(0)
    model = motrv3.build_model(params.model.to_config(), params.tracking.to_config())
    motrv3.save_checkpoint(path, model, params.as_dict())
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    params = tiny_params()
    raw_split, clips = make_synthetic_split(root, params)
    checkpoint = make_checkpoint(root / "models" / "tiny" / "checkpoint.pt", params)
    return root, params, raw_split, clips, checkpoint


def _params_file(root: Path, params) -> Path:
    import yaml

    path = root / "params.yaml"
    data = params.as_dict()
    path.write_text(yaml.safe_dump(data))
    return path


def test_track_stage_writes_one_file_per_sequence_and_fps(tiny_run, tmp_path, monkeypatch):
    from stages.evaluate import main as evaluate_main
    from stages.track import main as track_main

    root, params, raw_split, clips, checkpoint = tiny_run
    params_file = _params_file(root, params)
    out = tmp_path / "results" / "tiny" / "val"
    track_main(
        ["--params", str(params_file), "--method", "tiny", "--split", "val", "--checkpoint", str(checkpoint)]
        + ["--clips-dir", str(clips.parent), "--out", str(out), "--set", "track.save_video=true"]
    )
    sequences = sorted(p.name for p in raw_split.iterdir())
    assert sorted(p.stem for p in out.glob("*.txt")) == sequences
    assert sorted(p.stem for p in out.glob("*.mp4")) == sequences
    assert _video_frames(out / f"{sequences[0]}.mp4") == 5
    for name in sequences:
        rows = motchallenge.read_results(out / f"{name}.txt", seq_length=5)  # validates every row
        assert len(rows) > 0 and set(rows[:, 0].astype(int)) <= set(range(1, 6))
        assert (rows[:, 7:] == -1).all()
    fps = json.loads((out / "fps.json").read_text())
    assert fps["frames"] == 5 * len(sequences)
    assert fps["fps"] > 0 and fps["fps_with_io"] > 0
    assert fps["fps_with_io"] <= fps["fps"]  # reading + decoding only adds time
    assert set(fps["sequences"]) == set(sequences)
    assert all(s["frames"] == 5 for s in fps["sequences"].values())

    # evaluate on the same split: TrackEval metrics of a random model, FPS carried over
    monkeypatch.chdir(tmp_path)
    evaluate_main(
        ["--params", str(params_file), "--method", "tiny", "--split", "val", "--clips-dir", str(clips.parent)]
        + ["--results", str(out), "--metrics-dir", str(tmp_path / "metrics")]
    )
    metrics = json.loads((tmp_path / "metrics" / "tiny.json").read_text())
    assert 0.0 <= metrics["HOTA"] <= 100.0 and metrics["FPS"] == pytest.approx(fps["fps"])
    assert metrics["GT_Dets"] > 0 and metrics["Dets"] == sum(
        len(motchallenge.read_results(out / f"{n}.txt")) for n in sequences
    )
    lines = (tmp_path / "metrics" / "tiny_per_sequence.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [*sequences, "COMBINED"]


def _video_frames(path: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_evaluate_stage_zips_an_unlabelled_split(tmp_path, monkeypatch):
    """A split without gt.txt (a benchmark's test set) gets a submission archive, not metrics."""
    import zipfile

    from pipeline.data.synthetic import generate
    from pipeline.steps.convert import convert_split
    from stages.evaluate import main as evaluate_main

    params = tiny_params("synthetic.sequences={test: 2}", "synthetic.frames=3")
    generate(params.synthetic, tmp_path / "raw", progress=False)
    names = sorted(p.name for p in (tmp_path / "raw" / "test").iterdir())
    for name in names:
        (tmp_path / "raw" / "test" / name / "gt" / "gt.txt").unlink()
    convert_split(
        tmp_path / "raw",
        "test",
        "synthetic",
        tmp_path / "clips" / "test",
        dataset="synthetic",
        row_group_frames=16,
        lenient=False,
        progress=False,
    )
    results = tmp_path / "results" / "tiny" / "test"
    results.mkdir(parents=True)
    for name in names:
        (results / f"{name}.txt").write_text("1,1,5,5,10,20,0.9,-1,-1,-1\n3,1,6,5,10,20,0.8,-1,-1,-1\n")
    params_file = _params_file(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    argv = ["--params", str(params_file), "--method", "tiny", "--split", "test", "--clips-dir", "clips"]
    evaluate_main(argv)
    with zipfile.ZipFile(tmp_path / "results" / "tiny" / "test-submission.zip") as bundle:
        assert sorted(bundle.namelist()) == [f"{name}.txt" for name in names]
    assert not (tmp_path / "metrics").exists()

    (results / f"{names[0]}.txt").write_text("4,1,5,5,10,20,0.9,-1,-1,-1\n")  # frame 4 of a 3-frame sequence
    with pytest.raises(SystemExit, match=rf"{names[0]}\.txt:1: frame: 4 is outside the sequence"):
        evaluate_main(argv)


def test_track_errors_name_the_missing_input(tiny_run, tmp_path):
    from stages.track import main as track_main

    root, params, _, clips, _ = tiny_run
    params_file = _params_file(root, params)
    with pytest.raises(SystemExit, match="no such checkpoint"):
        track_main(
            ["--params", str(params_file), "--method", "tiny", "--checkpoint", str(tmp_path / "none.pt")]
        )


@pytest.mark.slow
def test_track_split_in_parallel_on_ray_matches_sequential(tiny_run, tmp_path):
    """Two Ray actors on a local 127.0.0.1 cluster give the same results as one process."""
    import ray

    from pipeline.inference.split_tracking import TrackSettings, track_split

    root, params, _, clips, checkpoint = tiny_run
    settings = TrackSettings(
        str(checkpoint),
        params.tracking.to_config(),
        params.data.eval_size,
        params.data.eval_max_size,
        "cpu",
        1,
    )
    sequential = track_split(settings, clips, tmp_path / "seq", workers=1)
    was_running = ray.is_initialized()
    try:
        parallel = track_split(settings, clips, tmp_path / "par", workers=2)
    finally:
        if not was_running:
            ray.shutdown()
    assert parallel["workers"] == 2 and sequential["workers"] == 1
    assert parallel["frames"] == sequential["frames"]
    for name in sequential["sequences"]:
        assert (tmp_path / "par" / f"{name}.txt").read_text() == (
            tmp_path / "seq" / f"{name}.txt"
        ).read_text()
