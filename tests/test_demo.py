"""`motrv3 track VIDEO_OR_FRAME_DIR --checkpoint CKPT`: annotated video + MOTChallenge txt, on CPU."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.cli import main as cli_main
from pipeline.drawing import BROWSER_CODECS, CODECS
from pipeline.formats import motchallenge
from tests.test_track import make_checkpoint, tiny_params


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    from pipeline.data.synthetic import generate

    root = tmp_path_factory.mktemp("demo")
    params = tiny_params("synthetic.sequences={val: 1}", "synthetic.frames=7")
    generate(params.synthetic, root / "raw", progress=False)
    (sequence,) = sorted((root / "raw" / "val").iterdir())
    checkpoint = make_checkpoint(root / "checkpoint.pt", params)
    return root, sequence, checkpoint


def _read_video(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} is not a readable video"
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def test_demo_on_a_frame_folder_writes_video_and_results(demo_inputs, tmp_path, capsys):
    import cv2

    root, sequence, checkpoint = demo_inputs
    out = tmp_path / "out"
    cli_main(
        [
            "track",
            str(sequence),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
    )
    (video,) = [p for p in out.iterdir() if p.suffix in (".mp4", ".webm")]
    assert video.stem == sequence.name
    frames = _read_video(video)
    original = cv2.imread(str(sorted((sequence / "img1").iterdir())[0]))
    assert len(frames) == 7
    assert frames[0].shape == original.shape
    rows = motchallenge.read_results(out / f"{sequence.name}.txt", seq_length=7)
    assert len(rows) > 0  # the tiny params let every query become a track
    assert (rows[:, 7:] == -1).all()
    # the drawing changed the image (boxes and labels over the frame)
    assert cv2.absdiff(frames[0], original).mean() > 1.0
    assert "7 frames" in capsys.readouterr().out
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_demo_on_a_video_file(demo_inputs, tmp_path):
    """A video in (written here with OpenCV from the synthetic frames), the same frame count out."""
    root, sequence, checkpoint = demo_inputs
    video, images = _write_clip(sequence, tmp_path / "clip.mp4")
    from pipeline.demo import run_demo

    summary = run_demo(video, checkpoint, tmp_path / "out", device="cpu", threads=1, progress=False)
    assert summary["frames"] == len(images)
    # written in a codec browsers play (OpenCV's wheels have VP9, not H.264), read back whole
    assert summary["codec"] in BROWSER_CODECS
    assert Path(summary["video"]) == tmp_path / "out" / f"clip{CODECS[summary['codec']][1]}"
    assert len(_read_video(summary["video"])) == len(images)
    motchallenge.read_results(tmp_path / "out" / "clip.txt", seq_length=len(images))


def _write_clip(sequence, video):
    """The synthetic sequence's frames as an mp4v video (input only, written here with OpenCV)."""
    import cv2

    images = [cv2.imread(str(p)) for p in sorted((sequence / "img1").iterdir())]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, images[0].shape[1::-1])
    for image in images:
        writer.write(image)
    writer.release()
    return video, images


def test_source_parsing_camera_index_url_or_path():
    from pipeline.demo import _stream_name, parse_source

    assert parse_source("0") == 0 and parse_source("12") == 12
    for url in ("rtsp://cam.local:554/live/ch1", "http://host/video.mjpg", "file:///tmp/x.mp4"):
        assert parse_source(url) == url
    assert parse_source("clip.mp4") == Path("clip.mp4") and parse_source("out/0") == Path("out/0")
    assert _stream_name("rtsp://cam.local:554/live/ch1") == "ch1"
    assert _stream_name("rtsp://user:pw@10.0.0.5:554/") == "10.0.0.5"


def test_stream_input_runs_until_max_frames_stop_or_its_end(demo_inputs, tmp_path):
    """The camera/stream path (one capture, read on) with a file:// URL standing in for rtsp://."""
    from pipeline.demo import FrameSource, run_demo

    _, sequence, checkpoint = demo_inputs
    clip, _ = _write_clip(sequence, tmp_path / "clip.mp4")  # 7 frames
    url = clip.resolve().as_uri()
    summary = run_demo(url, checkpoint, tmp_path / "a", device="cpu", threads=1, progress=False, max_frames=3)
    assert summary["frames"] == 3 and Path(summary["results"]).name == "clip.txt"
    assert len(_read_video(summary["video"])) == 3
    # to the stream's end: its first frame went to the warm-up, the capture is not reopened
    summary = run_demo(url, checkpoint, tmp_path / "b", device="cpu", threads=1, progress=False, video=False)
    assert summary["frames"] == 6 and summary["video"] is None
    stop = threading.Event()  # what Ctrl-C sets
    source = FrameSource(url, stop=stop)
    taken = []
    for number, image in source:
        taken.append((number, image.ndim))
        stop.set()
    source.close()
    assert taken == [(1, 3)]


def test_bf16_autocast_wrapper_and_its_cpu_refusal(demo_inputs, tmp_path):
    import torch

    import motrv3
    from motrv3.tracker import preprocess
    from pipeline.demo import Bf16Autocast, FrameSource, tracking_settings

    _, sequence, checkpoint = demo_inputs
    with pytest.raises(SystemExit, match="--bf16 needs a CUDA device"):
        cli_main(
            [
                "track",
                str(sequence),
                "--checkpoint",
                str(checkpoint),
                "--device",
                "cpu",
                "--bf16",
                "--threads",
                "1",
            ]
        )
    # the wrapper itself, under CPU autocast here (CUDA in `motrv3 track --bf16`), on the model as
    # it is (the CPU inference copy's oneDNN linears are float32-only; CUDA copies have none)
    model, config = motrv3.load_checkpoint(checkpoint)
    tracker = motrv3.Tracker(model, *tracking_settings(config, None, None), optimize=False)
    inner, inside = tracker.model, []
    forward = inner.forward_frame

    def spy(*args):
        out = forward(*args)
        inside.append(out.logits.dtype)
        return out

    inner.forward_frame = spy
    tracker.model = Bf16Autocast(inner, "cpu")
    for _, image in FrameSource(sequence, max_frames=3):
        tracks = tracker.step(image)
    assert inside == [torch.bfloat16] * 3  # the network ran in bfloat16 ...
    out = tracker.model.forward_frame(preprocess(image, tracker.size, tracker.max_size)[0])
    assert out.logits.dtype == out.boxes.dtype == torch.float32  # ... its logits and boxes come back float32
    assert tracks and all(isinstance(v, float) for t in tracks for v in t.box)


def test_video_output_codecs(tmp_path, caplog):
    import logging

    import numpy as np

    from pipeline.drawing import VideoOutput

    frame = np.zeros((48, 64, 3), np.uint8)
    with caplog.at_level(logging.INFO, logger="pipeline.drawing"):
        sink = VideoOutput(tmp_path, "clip", 10.0, 64, 48, codec="mp4v")
        for _ in range(4):
            sink.write(frame)
        path = sink.close()
    assert path == tmp_path / "clip.mp4" and len(_read_video(path)) == 4
    assert "may not play in browsers" in caplog.text
    sink = VideoOutput(tmp_path, "gone", 10.0, 64, 48)
    sink.close(keep=False)
    assert not list(tmp_path.glob("*gone*"))


def test_demo_bad_input_is_a_clear_error(demo_inputs, tmp_path):
    _, _, checkpoint = demo_inputs
    with pytest.raises(SystemExit, match="no such video or frame folder"):
        cli_main(["track", str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoint)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no image files"):
        cli_main(["track", str(empty), "--checkpoint", str(checkpoint)])
