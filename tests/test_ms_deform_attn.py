"""Multi-scale deformable attention (Deformable DETR Eq. 3): hand-worked bilinear case, the C++ CPU
kernel and the CUDA kernel against the grid_sample reference (values, gradients, gradcheck),
the module's shapes, initialisation and padding mask, and implementation selection."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from motrv3.ops import MSDeformAttn, available_impls, ms_deform_attn, ms_deform_attn_pytorch

HAS_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler to build the CPU kernel")
CPU_IMPLS = ["pytorch", pytest.param("cpu", marks=needs_compiler)]


def level_starts(shapes: torch.Tensor) -> torch.Tensor:
    sizes = shapes[:, 0] * shapes[:, 1]
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def random_inputs(batch, shapes, heads, dim, queries, points, dtype, device="cpu", seed=0):
    """Locations spill outside [0, 1] so that zero padding and partly outside points are covered."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(shapes, dtype=torch.long)
    length = int((shapes[:, 0] * shapes[:, 1]).sum())
    levels = shapes.shape[0]
    value = torch.randn(batch, length, heads, dim, generator=gen, dtype=dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=gen, dtype=dtype) * 1.3 - 0.15
    weights = torch.rand(batch, queries, heads, levels, points, generator=gen, dtype=dtype)
    move = {"device": device}
    return (
        value.to(**move),
        shapes.to(**move),
        level_starts(shapes).to(**move),
        locations.to(**move),
        weights.to(**move),
    )


def outputs_and_grads(impl, value, shapes, starts, locations, weights, seed=1):
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    out = ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2], impl=impl)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(
        out.device
    )
    grads = torch.autograd.grad(out, leaves, grad_out)
    return [out.detach(), *grads]


# --- hand-worked case ------------------------------------------------------------------------
# One level, 2×2 map, one head, one channel: value [[1, 2], [3, 4]] (row-major positions 0..3).
# Pixel centres sit at (i + 0.5) / 2, so location x maps to column x·2 − 0.5.
#   p1 = (0.375, 0.625) → column 0.25, row 0.75: 1 + 0.25·(2−1) + 0.75·(3−1) = 2.75, weight 0.6
#   p2 = (0.125, 0.25)  → column −0.25, row 0: left neighbour is padding (0), right is value 1 with
#        weight 0.75 → 0.75, weight 0.4
#   p3 = (1.5, 0.5)     → entirely outside → 0, weight 0.9
# Output: 0.6·2.75 + 0.4·0.75 + 0.9·0 = 1.95.
# Gradients at p1: d/dcol = (1−0.75)·(2−1) + 0.75·(4−3) = 1, d/dx = 2·1·0.6 = 1.2;
#                  d/drow = (1−0.25)·(3−1) + 0.25·(4−2) = 2, d/dy = 2·2·0.6 = 2.4;
#                  d/dweight = 2.75. At p3 everything is 0.
def hand_case(dtype=torch.float64):
    value = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=dtype).view(1, 4, 1, 1)
    shapes = torch.tensor([[2, 2]])
    locations = torch.tensor([[0.375, 0.625], [0.125, 0.25], [1.5, 0.5]], dtype=dtype).view(1, 1, 1, 1, 3, 2)
    weights = torch.tensor([0.6, 0.4, 0.9], dtype=dtype).view(1, 1, 1, 1, 3)
    return value, shapes, level_starts(shapes), locations, weights


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_hand_worked_bilinear_case(impl):
    out, grad_value, grad_loc, grad_weights = outputs_and_grads(impl, *hand_case())
    torch.testing.assert_close(out.flatten(), torch.tensor([1.95], dtype=torch.float64))
    # grad of the output sum w.r.t. value: Σ_points weight · bilinear weight of each pixel
    grad_out = torch.randn(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected_value = (
        torch.tensor([0.6 * 0.1875 + 0.4 * 0.75, 0.6 * 0.0625, 0.6 * 0.5625, 0.6 * 0.1875]) * grad_out
    )
    torch.testing.assert_close(grad_value.flatten(), expected_value.double())
    torch.testing.assert_close(
        grad_loc.view(3, 2)[0], torch.tensor([1.2, 2.4], dtype=torch.float64) * grad_out
    )
    torch.testing.assert_close(grad_loc.view(3, 2)[2], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(
        grad_weights.flatten(), torch.tensor([2.75, 0.75, 0.0], dtype=torch.float64) * grad_out
    )


# --- C++ CPU kernel vs the grid_sample reference -----------------------------------------------
@needs_compiler
@pytest.mark.parametrize(
    "dtype,tol",
    [(torch.float32, {"rtol": 1e-5, "atol": 1e-5}), (torch.float64, {"rtol": 1e-12, "atol": 1e-12})],
)
@pytest.mark.parametrize("dim", [32, 5])  # 32: compile-time channel loop; 5: the generic one
def test_cpu_kernel_matches_reference(dtype, tol, dim):
    inputs = random_inputs(
        2, [[7, 9], [4, 5], [2, 3], [1, 1]], heads=3, dim=dim, queries=11, points=3, dtype=dtype
    )
    reference = outputs_and_grads("pytorch", *inputs)
    kernel = outputs_and_grads("cpu", *inputs)
    for name, ref, got in zip(
        ["output", "grad_value", "grad_locations", "grad_weights"], reference, kernel, strict=True
    ):
        torch.testing.assert_close(got, ref, **tol, msg=lambda m, name=name: f"{name}: {m}")


@needs_compiler
def test_cpu_kernel_gradcheck():
    value, shapes, starts, locations, weights = random_inputs(
        1, [[3, 4], [2, 2]], heads=2, dim=3, queries=2, points=2, dtype=torch.float64, seed=3
    )
    args = [value.requires_grad_(), shapes, starts, locations.requires_grad_(), weights.requires_grad_()]
    assert torch.autograd.gradcheck(lambda v, s, i, loc, w: ms_deform_attn(v, s, i, loc, w, impl="cpu"), args)


def test_reference_gradcheck():
    value, shapes, starts, locations, weights = random_inputs(
        1, [[3, 4], [2, 2]], heads=2, dim=3, queries=2, points=2, dtype=torch.float64, seed=3
    )
    args = [value.requires_grad_(), shapes, starts, locations.requires_grad_(), weights.requires_grad_()]
    assert torch.autograd.gradcheck(ms_deform_attn_pytorch, args)


# --- the module --------------------------------------------------------------------------------
SHAPES = torch.tensor([[8, 10], [4, 5], [2, 3], [1, 2]])


def module_inputs(batch=2, queries=7, d_model=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    query = torch.randn(batch, queries, d_model, generator=gen)
    flatten = torch.randn(batch, length, d_model, generator=gen)
    return query, flatten


def test_module_parameters_and_grid_init():
    module = MSDeformAttn(d_model=64, n_levels=4, n_heads=8, n_points=4)
    names = {name for name, _ in module.named_parameters()}
    assert names == {
        f"{m}.{p}"
        for m in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
        for p in ("weight", "bias")
    }
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    assert torch.count_nonzero(module.attention_weights.weight) == 0
    bias = module.sampling_offsets.bias.detach().view(8, 4, 4, 2)
    # head 1 looks along 45° (1, 1); point k sits at distance k+1; identical across levels
    torch.testing.assert_close(bias[1, 2, :, :], torch.tensor([[1.0, 1.0], [2, 2], [3, 3], [4, 4]]))
    # head 2 looks along 90°: (cos, sin) = (0, 1) up to rounding
    torch.testing.assert_close(bias[2, 0, 3], torch.tensor([0.0, 4.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[5, 3, 0], torch.tensor([-1.0, -1.0]))
    assert abs(math.atan2(bias[3, 0, 0, 1], bias[3, 0, 0, 0]) - 3 * math.pi / 4) < 1e-6


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("ref_dim", [2, 4])
def test_module_shapes_points_and_boxes(impl, ref_dim):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=4, n_heads=4, n_points=3, impl=impl)
    query, flatten = module_inputs()
    reference = torch.rand(2, 7, 4, ref_dim)
    out = module(query, reference, flatten, SHAPES, level_starts(SHAPES))
    assert out.shape == (2, 7, 32)
    out.sum().backward()
    assert module.sampling_offsets.weight.grad is not None
    assert torch.count_nonzero(module.sampling_offsets.weight.grad) > 0


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_module_sampling_locations(ref_dim):
    """Points: offsets in pixels of each level; boxes: offset · (w, h) · 0.5 / n_points around the centre."""
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=4, n_heads=4, n_points=3, impl="pytorch")
    torch.nn.init.normal_(module.sampling_offsets.weight, std=0.1)
    query, flatten = module_inputs(batch=1, queries=3)
    reference = torch.rand(1, 3, 4, ref_dim)
    out = module(query, reference, flatten, SHAPES, level_starts(SHAPES))

    offsets = module.sampling_offsets(query).view(1, 3, 4, 4, 3, 2)
    if ref_dim == 2:
        pixels = torch.stack([SHAPES[:, 1], SHAPES[:, 0]], -1).to(offsets)  # (w, h) per level
        locations = reference[:, :, None, :, None, :] + offsets / pixels[:, None, :]
    else:
        locations = (
            reference[:, :, None, :, None, :2] + offsets * reference[:, :, None, :, None, 2:] * 0.5 / 3
        )
    weights = module.attention_weights(query).view(1, 3, 4, 12).softmax(-1).view(1, 3, 4, 4, 3)
    value = module.value_proj(flatten).view(1, -1, 4, 8)
    expected = module.output_proj(
        ms_deform_attn_pytorch(value, SHAPES, level_starts(SHAPES), locations, weights)
    )
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_padding_mask_zeroes_masked_values(impl):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=4, n_heads=4, n_points=4, impl=impl)
    torch.nn.init.normal_(module.value_proj.bias)  # so padded positions would not project to 0 by chance
    query, flatten = module_inputs()
    mask = torch.zeros(flatten.shape[:2], dtype=torch.bool)
    mask[:, ::3] = True
    reference = torch.rand(2, 7, 4, 2)
    junk = flatten.clone()
    junk[mask] = 100.0 * torch.randn(int(mask.sum()), 32)
    starts = level_starts(SHAPES)
    masked = module(query, reference, flatten, SHAPES, starts, mask)
    torch.testing.assert_close(module(query, reference, junk, SHAPES, starts, mask), masked)
    # without the mask the junk changes the result: the mask is what removed it
    assert not torch.allclose(module(query, reference, junk, SHAPES, starts), masked)


@needs_compiler
def test_module_cpu_kernel_matches_reference_with_parameter_grads():
    torch.manual_seed(0)
    reference_module = MSDeformAttn(d_model=32, n_levels=4, n_heads=4, n_points=4, impl="pytorch")
    kernel_module = MSDeformAttn(d_model=32, n_levels=4, n_heads=4, n_points=4, impl="cpu")
    kernel_module.load_state_dict(reference_module.state_dict())
    query, flatten = module_inputs()
    reference = torch.rand(2, 7, 4, 4)
    grads = []
    for module in (reference_module, kernel_module):
        out = module(query, reference, flatten, SHAPES, level_starts(SHAPES))
        (out * torch.linspace(-1, 1, 32)).sum().backward()
        grads.append((out.detach(), {n: p.grad for n, p in module.named_parameters()}))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-5)
    for name, grad in grads[0][1].items():
        torch.testing.assert_close(
            grads[1][1][name], grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


# --- selection ---------------------------------------------------------------------------------
def test_selection_errors_are_clear():
    inputs = random_inputs(1, [[2, 2]], heads=1, dim=2, queries=1, points=1, dtype=torch.float32)
    with pytest.raises(ValueError, match="impl='bogus'"):
        ms_deform_attn(*inputs, impl="bogus")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        ms_deform_attn(*inputs, impl="cuda")
    with pytest.raises(ValueError, match="impl="):
        MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=1, impl="fast")
    with pytest.raises(ValueError, match="sampling_locations"):
        ms_deform_attn(inputs[0], inputs[1], inputs[2], inputs[3][..., :1], inputs[4], impl="pytorch")


@needs_compiler
def test_available_impls_and_auto_uses_cpu_kernel():
    impls = available_impls()
    assert impls[:2] == ["pytorch", "cpu"]
    inputs = random_inputs(1, [[3, 3]], heads=2, dim=4, queries=2, points=2, dtype=torch.float32)
    locations = inputs[3].clone().requires_grad_()
    out = ms_deform_attn(inputs[0], inputs[1], inputs[2], locations, inputs[4], impl="auto")
    assert out.grad_fn is not None and "KernelFunction" in type(out.grad_fn).__name__


def test_auto_falls_back_with_one_warning_without_compiler(tmp_path):
    script = """
import warnings, torch
from motrv3.ops import ms_deform_attn, ms_deform_attn_pytorch
from tests.test_ms_deform_attn import random_inputs
inputs = random_inputs(1, [[3, 3]], heads=2, dim=4, queries=2, points=2, dtype=torch.float32)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = ms_deform_attn(*inputs, impl="auto")
    ms_deform_attn(*inputs, impl="auto")
assert torch.equal(out, ms_deform_attn_pytorch(*inputs))
messages = [str(w.message) for w in caught if "motrv3.ops" in str(w.message)]
assert len(messages) == 1 and "falls back to the PyTorch path" in messages[0], messages
try:
    ms_deform_attn(*inputs, impl="cpu")
except RuntimeError as error:
    assert "could not be built" in str(error)
else:
    raise AssertionError("impl='cpu' without a compiler must raise")
print("ok")
"""
    env = {
        **os.environ,
        "CXX": "/nonexistent/c++",
        "MOTRV3_EXTENSIONS_DIR": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd()
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


# --- CUDA kernel (skipped without a GPU) -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize(
    "dtype,tol",
    [(torch.float32, {"rtol": 1e-4, "atol": 1e-4}), (torch.float64, {"rtol": 1e-10, "atol": 1e-10})],
)
@pytest.mark.parametrize("dim", [32, 8, 64, 5])  # shuffle width = dim, = dim, 32 (+ atomics), 1 (atomics)
def test_cuda_kernel_matches_reference(dtype, tol, dim):
    assert "cuda" in available_impls()
    inputs = random_inputs(
        2, [[7, 9], [4, 5], [2, 3], [1, 1]], heads=3, dim=dim, queries=37, points=3, dtype=dtype
    )
    reference = outputs_and_grads("pytorch", *inputs)
    kernel = outputs_and_grads("cuda", *(t.cuda() for t in inputs))
    for name, ref, got in zip(
        ["output", "grad_value", "grad_locations", "grad_weights"], reference, kernel, strict=True
    ):
        torch.testing.assert_close(got.cpu(), ref, **tol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.gpu
def test_cuda_hand_worked_case():
    out, grad_value, grad_loc, grad_weights = outputs_and_grads("cuda", *(t.cuda() for t in hand_case()))
    torch.testing.assert_close(out.cpu().flatten(), torch.tensor([1.95], dtype=torch.float64))


@pytest.mark.gpu
def test_cuda_kernel_gradcheck():
    value, shapes, starts, locations, weights = (
        t.cuda()
        for t in random_inputs(
            1, [[3, 4], [2, 2]], heads=2, dim=3, queries=2, points=2, dtype=torch.float64, seed=3
        )
    )
    args = [value.requires_grad_(), shapes, starts, locations.requires_grad_(), weights.requires_grad_()]
    assert torch.autograd.gradcheck(
        lambda v, s, i, loc, w: ms_deform_attn(v, s, i, loc, w, impl="cuda"), args
    )


@pytest.mark.gpu
def test_auto_picks_cuda_on_cuda_tensors():
    inputs = [
        t.cuda() for t in random_inputs(1, [[3, 3]], heads=2, dim=4, queries=2, points=2, dtype=torch.float32)
    ]
    locations = inputs[3].clone().requires_grad_()
    out = ms_deform_attn(inputs[0], inputs[1], inputs[2], locations, inputs[4], impl="auto")
    assert out.is_cuda and "KernelFunction" in type(out.grad_fn).__name__
