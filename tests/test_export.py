"""ONNX export and onnxruntime tracking: same tracks as the PyTorch tracker, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from motrv3.config import TrackingConfig  # noqa: E402
from motrv3.export import ExportMSDeformAttn, _LevelShapes, export_onnx  # noqa: E402
from motrv3.model import MOTR  # noqa: E402
from motrv3.onnx_network import OnnxFrameNetwork, load_onnx, onnx_providers  # noqa: E402
from motrv3.ops import MSDeformAttn  # noqa: E402
from motrv3.tracker import Tracker  # noqa: E402
from tests.model_configs import tiny_config  # noqa: E402

SIZE, MAX_SIZE = 96, 160
HEIGHT, WIDTH = 120, 200
FRAMES = 12
# Candidate (new_track_score, keep_track_score): the test takes the first whose thresholds no
# score of the torch run comes near, so that float rounding cannot flip a decision.
THRESHOLDS = [(0.6, 0.5), (0.65, 0.45), (0.7, 0.55), (0.55, 0.4), (0.75, 0.6), (0.8, 0.5)]
MARGIN = 2e-3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = MOTR(tiny_config()).eval()
    # A random network scores every query ≈ 0.01 (focal prior); sharper, centred class heads
    # make scores follow the image, so tracks start, persist and end.
    with torch.no_grad():
        for head in model.class_embed:
            head.weight.mul_(8.0)
            head.bias.zero_()
    return model


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    config = {"tracking": {"miss_tolerance": 2}, "data": {"eval_size": SIZE, "eval_max_size": MAX_SIZE}}
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", config=config)


def moving_rectangles(frames: int = FRAMES) -> list[np.ndarray]:
    """A red box entering from the left and leaving right, a green one rising out of the frame."""
    images = []
    for t in range(frames):
        image = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        left = -40 + 22 * t
        image[30:80, max(0, left) : max(0, left + 40)] = (250, 40, 40)
        top = 100 - 14 * t
        image[max(0, top) : max(0, top + 30), 120:150] = (40, 240, 80)
        images.append(image)
    return images


def record_scores(tracker: Tracker) -> list[torch.Tensor]:
    """Last-layer scores of every query the tracker's network sees, frame by frame."""
    seen, forward = [], tracker.model.forward_frame

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen.append(out.logits[-1].sigmoid().max(-1).values.clone())
        return out

    tracker.model.forward_frame = recording
    return seen


@pytest.fixture(scope="module")
def tracking_cfg(model) -> TrackingConfig:
    images = moving_rectangles()
    for new, keep in THRESHOLDS:
        cfg = TrackingConfig(new_track_score=new, keep_track_score=keep, miss_tolerance=2)
        tracker = Tracker(model, cfg, SIZE, MAX_SIZE)
        seen = record_scores(tracker)
        for image in images:
            tracker.step(image)
        scores = torch.cat(seen)
        if min(float((scores - new).abs().min()), float((scores - keep).abs().min())) > MARGIN:
            return cfg
    pytest.fail("test setup: every candidate threshold pair lies within MARGIN of some score")


def test_export_attention_matches_the_module():
    """The grid_sample formulation with traced level sizes equals MSDeformAttn (Deformable DETR Eq. 3)."""
    torch.manual_seed(0)
    attention = MSDeformAttn(d_model=32, n_levels=2, n_heads=2, n_points=3, impl="pytorch")
    with torch.no_grad():
        attention.sampling_offsets.weight.normal_(0, 0.5)
        attention.attention_weights.weight.normal_(0, 0.5)
    shapes = [(6, 10), (3, 5)]
    levels = _LevelShapes()
    levels.shapes = shapes
    exported = ExportMSDeformAttn(attention, levels)
    spatial = torch.tensor(shapes)
    start = torch.tensor([0, 60])
    memory = torch.randn(1, 75, 32)
    query = torch.randn(1, 7, 32)
    for reference in (torch.rand(1, 7, 2, 2), torch.rand(1, 7, 2, 4) * 0.5 + 0.25):
        expected = attention(query, reference, memory, spatial, start)
        torch.testing.assert_close(exported(query, reference, memory, spatial, start), expected)


def test_onnx_tracker_matches_torch_tracker_frame_by_frame(model, onnx_path, tracking_cfg):
    images, cfg = moving_rectangles(), tracking_cfg
    torch_tracker = Tracker(model, cfg, SIZE, MAX_SIZE)
    onnx_tracker = Tracker(OnnxFrameNetwork(onnx_path, threads=1), cfg, SIZE, MAX_SIZE)
    tolerance = 1e-3 * max(HEIGHT, WIDTH)
    ids_per_frame = []
    for frame, image in enumerate(images):
        expected, got = torch_tracker.step(image), onnx_tracker.step(image)
        assert [t.track_id for t in got] == [t.track_id for t in expected], f"frame {frame}"
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g.box, e.box, atol=tolerance, err_msg=f"frame {frame}")
            assert g.score == pytest.approx(e.score, abs=1e-4)
        ids_per_frame.append({t.track_id for t in expected})
    # The sequence exercises the life cycle: identities start late, persist, and end.
    started_late = set().union(*ids_per_frame[1:]) - ids_per_frame[0]
    persisted = any(a & b for a, b in zip(ids_per_frame, ids_per_frame[1:], strict=False))
    ended = set().union(*ids_per_frame[:-1]) - ids_per_frame[-1]
    assert started_late and persisted and ended, ids_per_frame


def test_tracking_run_gives_the_same_motchallenge_rows(model, onnx_path, tracking_cfg, tmp_path):
    run_online = pytest.importorskip("pipeline.inference.split_tracking").run_online
    motchallenge = pytest.importorskip("pipeline.formats.motchallenge")
    images, cfg = moving_rectangles(), tracking_cfg
    network, config = load_onnx(onnx_path)
    assert config["data"]["eval_size"] == SIZE  # the checkpoint's settings travel in the file
    frames = list(enumerate(images, start=1))
    rows = {}
    for name, net in (("torch", model), ("onnx", network)):
        rows[name], count, _, _ = run_online(Tracker(net, cfg, SIZE, MAX_SIZE), frames)
        assert count == FRAMES
        motchallenge.write_results(tmp_path / f"{name}.txt", rows[name])
    expected = np.loadtxt(tmp_path / "torch.txt", delimiter=",", ndmin=2)
    got = np.loadtxt(tmp_path / "onnx.txt", delimiter=",", ndmin=2)
    assert len(expected) > FRAMES // 2 and got.shape == expected.shape
    np.testing.assert_array_equal(got[:, :2], expected[:, :2])  # frame, id
    np.testing.assert_allclose(got[:, 2:6], expected[:, 2:6], atol=1e-3 * max(HEIGHT, WIDTH) + 0.01)


def test_a_file_that_is_not_a_motrv3_export_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ValueError, match="not a motrv3 export"):
        OnnxFrameNetwork(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnnxFrameNetwork(tmp_path / "missing.onnx")


@pytest.mark.parametrize("has_cuda", [False, True])
def test_execution_providers_follow_the_device(monkeypatch, has_cuda):
    import onnxruntime

    available = ["CUDAExecutionProvider"] * has_cuda + ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert onnx_providers("auto") == available  # CUDA first when onnxruntime-gpu has it
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    if has_cuda:
        assert onnx_providers("cuda:0") == available
    else:
        with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
            onnx_providers("cuda")
    with pytest.raises(ValueError, match="expected auto, cpu or cuda"):
        onnx_providers("tpu")


def test_export_and_track_commands(model, tracking_cfg, tmp_path):
    """`motrv3 export` writes a file `motrv3 track` runs with onnxruntime, with the checkpoint's settings."""
    import cv2
    import onnxruntime

    from motrv3.checkpoint import save_checkpoint
    from motrv3.config import to_dict
    from pipeline.commands.export import main as export_main

    demo = pytest.importorskip("pipeline.demo")
    tracking = to_dict(tracking_cfg)
    config = {"model": to_dict(model.model_cfg), "tracking": tracking, "data": {"eval_size": SIZE}}
    checkpoint = save_checkpoint(tmp_path / "checkpoint.pt", model, config)
    exported = tmp_path / "tiny.onnx"
    export_main(["--checkpoint", str(checkpoint), "--out", str(exported)])
    assert load_onnx(exported)[1]["tracking"] == tracking
    frames = tmp_path / "frames"
    frames.mkdir()
    for number, image in enumerate(moving_rectangles()[:4], start=1):
        cv2.imwrite(str(frames / f"{number:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    summary = {}
    for name, path in (("torch", checkpoint), ("onnx", exported)):
        summary[name] = demo.run_demo(
            frames, path, tmp_path / name, max_size=MAX_SIZE, threads=1, progress=False
        )
    assert summary["onnx"]["frames"] == 4
    # auto device: onnxruntime's CUDA provider when it has one, else its CPU one, said in the label
    expected_device = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    assert summary["onnx"]["device"] == f"{expected_device} (onnxruntime)"
    expected = np.loadtxt(summary["torch"]["results"], delimiter=",", ndmin=2)
    got = np.loadtxt(summary["onnx"]["results"], delimiter=",", ndmin=2)
    assert len(expected) and got.shape == expected.shape
    np.testing.assert_array_equal(got[:, :2], expected[:, :2])
    with pytest.raises(SystemExit, match="does not exist"):
        export_main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")])
