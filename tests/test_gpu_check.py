"""`python -m benchmarks.gpu_check` (docs/gpu_check.md): the dry run end to end on a machine without
Ray, MLflow, DVC, TrackEval, pydantic or `pipeline`; the one-line exit without CUDA; and that its
checks fail when they should (a wrong kernel, a wrong backward, no time left)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import gpu_check
from benchmarks.bench_deform_attn import level_shapes
from motrv3.ops import ms_deform_attn_pytorch

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("ray", "mlflow", "dvc", "trackeval", "pydantic", "pipeline")

# Runs the check with the packages a minimal CUDA machine lacks made unimportable.
MINIMAL_MACHINE = f"""
import sys

BLOCKED = {BLOCKED!r}


class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on a minimal machine")
        return None


sys.meta_path.insert(0, Absent())
from benchmarks.gpu_check import main

code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
if leaked:
    raise SystemExit(f"imported on a minimal machine: {{leaked}}")
sys.exit(code)
"""


def run_script(args: list[str], env: dict[str, str] | None = None, timeout: int = 1800):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dry_run_runs_every_section_without_pipeline_packages(tmp_path):
    out = tmp_path / "gpu_check.json"
    # ~30 s on two idle cores; the budget only guards against a starved machine skipping sections.
    proc = run_script(["-c", MINIMAL_MACHINE, "--dry-run", "--budget", "1800", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASSED" in proc.stdout
    result = json.loads(out.read_text())
    assert result["dry_run"] and result["passed"] and result["failures"] == [] and result["skipped"] == []
    sections = result["sections"]
    assert set(sections) == set(gpu_check.SECTIONS) - {"compiled_inference"}
    for case in ("encoder", "decoder"):
        for name in ("output", "grad_value", "grad_locations", "grad_weights"):
            row = sections["op_parity"][case][name]
            assert row["ok"] and row["max_rel"] < 1e-5, (case, name, row)
    assert sections["op_gradcheck"]["ok"]
    assert sections["op_timing"]["decoder"]["queries"] == 8 + 3
    assert sections["op_timing"]["encoder"]["pytorch/forward_backward"]["median_s"] > 0
    for role in ("r50", "convnext_b"):
        frame = sections["inference"][role]["fp32"]
        # Every frame ran with its 3 track queries, through the grid_sample path of the dry run.
        assert frame["num_track_queries"] == 3 and frame["outputs_finite"] and frame["fps"] > 0
        assert frame["deform_attn_calls"]["kernel"] == 0 and frame["deform_attn_calls"]["pytorch"] > 0
    for name in ("fp32/no_checkpointing", "fp32/checkpointing"):
        step = sections["training"][name]
        assert step["loss_finite"] and step["median_s"] > 0 and step["frames"] == 2


def test_without_cuda_prints_one_line_and_exits_zero(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = run_script(["-m", "benchmarks.gpu_check", "--out", str(out)], env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], proc.stdout
    assert not out.exists()


def test_parity_fails_a_kernel_off_by_a_thousandth():
    plan = gpu_check.dry_run_plan()
    exact = gpu_check.op_parity(plan, ms_deform_attn_pytorch, deadline=time.perf_counter() + 60)
    assert exact["ok"]

    def scaled(*args):  # a kernel whose output is 0.1% too large: far above fp32 rounding
        return ms_deform_attn_pytorch(*args) * 1.001

    wrong = gpu_check.op_parity(plan, scaled, deadline=time.perf_counter() + 60)
    assert not wrong["ok"]
    assert not wrong["decoder"]["output"]["ok"] and wrong["decoder"]["output"]["max_rel"] > 5e-4
    assert gpu_check.section_checks("op_parity", wrong) == [("op_parity: out of tolerance", False)]


class DoubledValueGradient(torch.autograd.Function):
    """The grid_sample op with a backward that doubles the value gradient (a kernel bug)."""

    @staticmethod
    def forward(ctx, value, shapes, starts, locations, weights):
        ctx.save_for_backward(value, shapes, starts, locations, weights)
        return ms_deform_attn_pytorch(value, shapes, starts, locations, weights)

    @staticmethod
    def backward(ctx, grad):
        value, shapes, starts, locations, weights = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (value, locations, weights)]
            out = ms_deform_attn_pytorch(leaves[0], shapes, starts, leaves[1], leaves[2])
            grads = torch.autograd.grad(out, leaves, grad)
        return 2 * grads[0], None, None, grads[1], grads[2]


def test_gradcheck_catches_a_wrong_backward():
    plan = gpu_check.dry_run_plan()
    assert gpu_check.op_gradcheck(plan, ms_deform_attn_pytorch)["ok"]
    result = gpu_check.op_gradcheck(plan, DoubledValueGradient.apply)
    assert not result["ok"] and "Jacobian mismatch" in result["error"]


def test_failures_and_measurements():
    checks = gpu_check.section_checks
    assert checks("inference", {"r50": {"fp32": {"ok": False}, "best_fps": 3.0}})[0][1] is False
    assert checks("training", {"fp32/checkpointing": {"ok": False}})[0][1] is False
    assert checks("training", {"error": "OutOfMemoryError: ..."}) == [
        ("training: OutOfMemoryError: ...", False)
    ]
    assert checks("op_timing", {"encoder": {"speedup/forward": 2.0, "target_met/forward": False}}) == []
    # torch.compile is a measurement: its errors fail nothing.
    assert checks("compiled_inference", {"error": "BackendCompilerFailed"}) == []


def test_no_time_left_skips_sections_and_fails_the_unverified_op_checks():
    args = gpu_check.parse_args(["--dry-run", "--budget", "0"])
    result = gpu_check.run_sections(gpu_check.dry_run_plan(), args)
    assert all(section == {"skipped": "time budget"} for section in result["sections"].values())
    assert set(result["skipped"]) == set(gpu_check.SECTIONS) - {"compiled_inference"}
    assert not result["passed"]
    assert sorted(result["failures"]) == [
        "op_gradcheck: not checked (time budget)",
        "op_parity: not checked (time budget)",
    ]


def test_timing_loops_stop_at_their_deadline():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    late = gpu_check.timed(slow, "cpu", warmup=1, repeats=100, deadline=time.perf_counter() - 1)
    assert late["repeats"] == 1 and late["repeats_planned"] == 100 and len(calls) == 2
    bounded = gpu_check.timed(slow, "cpu", warmup=0, repeats=100, deadline=time.perf_counter() + 0.2)
    assert 2 <= bounded["repeats"] < 20
    assert bounded["min_s"] >= 0.02


def test_op_check_shapes_are_the_models_levels():
    """The paper's 800×1440 frame gives levels 100×180, 50×90, 25×45, 13×23 (stride-2 conv on C5:
    ⌈25/2⌉ = 13, ⌈45/2⌉ = 23); on an odd size the model's own maps agree with `level_shapes`."""
    assert level_shapes(800, 1440).tolist() == [[100, 180], [50, 90], [25, 45], [13, 23]]
    from motrv3 import build_model

    plan = gpu_check.dry_run_plan()
    model = build_model(gpu_check.model_config(plan, "resnet50", d_model=32, nheads=2)).eval()
    with torch.no_grad():
        maps = model.multiscale_features(torch.zeros(1, 3, 100, 150))
    assert [list(m.shape[-2:]) for m in maps] == level_shapes(100, 150).tolist()
