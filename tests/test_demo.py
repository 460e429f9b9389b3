"""`motrv3 track VIDEO_OR_FRAME_DIR --checkpoint CKPT`: annotated video + MOTChallenge txt, on CPU."""

from __future__ import annotations

import pytest

from pipeline.cli import main as cli_main
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
    frames = _read_video(out / f"{sequence.name}.mp4")
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
    import cv2

    root, sequence, checkpoint = demo_inputs
    images = [cv2.imread(str(p)) for p in sorted((sequence / "img1").iterdir())]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, images[0].shape[1::-1])
    for image in images:
        writer.write(image)
    writer.release()
    from pipeline.demo import run_demo

    summary = run_demo(video, checkpoint, tmp_path / "out", device="cpu", threads=1, progress=False)
    assert summary["frames"] == len(images)
    assert len(_read_video(tmp_path / "out" / "clip.mp4")) == len(images)
    motchallenge.read_results(tmp_path / "out" / "clip.txt", seq_length=len(images))


def test_demo_bad_input_is_a_clear_error(demo_inputs, tmp_path):
    _, _, checkpoint = demo_inputs
    with pytest.raises(SystemExit, match="no such video or frame folder"):
        cli_main(["track", str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoint)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no image files"):
        cli_main(["track", str(empty), "--checkpoint", str(checkpoint)])
