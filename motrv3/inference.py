"""Inference-only speed-ups that keep the network's function: a prepared copy for tracking/detection.

`optimize_for_inference(model)` returns an eval-only copy of a MOTR with
- every frozen batch norm folded into the convolution before it (W' = W·s, b' = (b − μ)·s + β with
  s = γ / √(σ² + ε)): one op instead of two over each backbone map;
- the backbone and the input projections in channels_last memory layout, which oneDNN's
  convolutions run without reordering, and whose maps flatten into the encoder's token layout
  without a copy;
- on CPU, the transformer's linear layers run by oneDNN's fused inference kernel (bias, and the
  FFN's ReLU, applied inside the GEMM; the MKL path of `F.linear` first copies the bias over the
  whole output).
The whole copy's speed-up is measured in benchmarks/bench_model.py (`after/optimized` vs
`after/reference`).
Outputs equal the original's up to float rounding (tests: ≤ 1e-4 relative); the copy cannot be
trained or checkpointed, the original is left untouched.

The process-wide allocator setting that goes with it (`retain_freed_memory`) is the pipeline's
(`pipeline.runtime`): the library changes no process-wide state.
"""

from __future__ import annotations

import copy
import functools
import logging

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

log = logging.getLogger(__name__)

PROBE_SIZE = (96, 160)  # small image for the folded-vs-original check (every level non-empty)
PROBE_TOLERANCE = 1e-4  # relative to the largest activation of each level


def _last_leaf(module: nn.Module) -> nn.Module:
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return module


@torch.no_grad()
def fold_batch_norm_into_conv(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> None:
    """conv ← bn ∘ conv: scale each output channel's filter, absorb the shift into the bias."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def fold_frozen_batch_norms(module: nn.Module) -> int:
    """Fold every FrozenBatchNorm2d that directly follows a Conv2d (in module order) into it, in place.

    The BN becomes nn.Identity. Module order stands in for data flow, which holds for timm's
    ResNets; `optimize_for_inference` checks the result against the original numerically.
    Returns the number of folds.
    """
    folded = 0
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (_, first), (name, second) in zip(children, children[1:], strict=False):
            conv = _last_leaf(first)
            if (
                isinstance(second, FrozenBatchNorm2d)
                and isinstance(conv, nn.Conv2d)
                and conv.out_channels == second.weight.numel()
            ):
                fold_batch_norm_into_conv(conv, second)
                setattr(parent, name, nn.Identity())
                folded += 1
    return folded


class OneDNNLinear(nn.Module):
    """`nn.Linear`, optionally followed by ReLU, as one oneDNN inference call (CPU, no autograd).

    Shares the original layer's parameters. `torch.ops.mkldnn._linear_pointwise` is the fused op
    PyTorch's own compiler emits on CPU; `available()` checks it once per process.
    """

    def __init__(self, linear: nn.Linear, relu: bool = False):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.attr = "relu" if relu else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.attr, [], "")

    @staticmethod
    def available() -> bool:
        return _onednn_linear_works()


@functools.cache
def _onednn_linear_works() -> bool:
    try:
        generator = torch.Generator().manual_seed(0)
        linear = nn.Linear(16, 8)
        x = torch.randn(5, 16, generator=generator)
        with torch.inference_mode():
            expected = torch.relu(linear(x))
            got = OneDNNLinear(linear, relu=True)(x)
        return torch.allclose(expected, got, rtol=1e-4, atol=1e-5)
    except (AttributeError, RuntimeError):  # op missing or oneDNN not built in
        return False


def use_onednn_linears(transformer: nn.Module) -> int:
    """Swap the encoder/decoder layers' nn.Linear for OneDNNLinear (linear1 with its ReLU), in place.

    nn.MultiheadAttention's projections stay: it reads their weights directly. Returns the count.
    """
    swapped = 0
    for layer in transformer.modules():
        if isinstance(layer, nn.MultiheadAttention):
            continue
        fuse_relu = isinstance(getattr(layer, "activation", None), nn.ReLU)
        for name, child in list(layer.named_children()):
            if type(child) is nn.Linear:
                relu = fuse_relu and name == "linear1"
                setattr(layer, name, OneDNNLinear(child, relu=relu))
                swapped += 1
        if fuse_relu:
            layer.activation = nn.Identity()
    return swapped


def _max_relative_difference(reference: list[torch.Tensor], candidate: list[torch.Tensor]) -> float:
    return max(
        float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))
        for a, b in zip(reference, candidate, strict=True)
    )


def optimize_for_inference(
    model, fold_batch_norm: bool = True, channels_last: bool = True, onednn_linears: bool = True
):
    """An eval-only copy of `model` (a `motrv3.MOTR`) with the speed-ups of this module's docstring.

    A backbone whose folded copy disagrees with the original on a probe image (a timm model
    whose module order is not its data flow) keeps its batch norms, with a warning.
    """
    if getattr(model, "inference_only", False):
        return model
    prepared = copy.deepcopy(model).eval()
    prepared.requires_grad_(False)
    device = next(model.parameters()).device
    if fold_batch_norm:
        folded = fold_frozen_batch_norms(prepared.backbone)
        if folded:
            probe = torch.randn(1, 3, *PROBE_SIZE, generator=torch.Generator().manual_seed(0)).to(device)
            with torch.inference_mode():
                was_training = model.training
                model.eval()
                try:
                    reference = model.backbone(probe)
                finally:
                    model.train(was_training)
                difference = _max_relative_difference(reference, prepared.backbone(probe))
            if difference > PROBE_TOLERANCE:
                log.warning(
                    "optimize_for_inference: folding batch norm changed backbone %s by %.2g; kept unfolded",
                    model.model_cfg.backbone,
                    difference,
                )
                prepared = copy.deepcopy(model).eval()
                prepared.requires_grad_(False)
    if onednn_linears and device.type == "cpu" and OneDNNLinear.available():
        use_onednn_linears(prepared.transformer)
    if channels_last:
        prepared.backbone.to(memory_format=torch.channels_last)
        prepared.input_proj.to(memory_format=torch.channels_last)
        prepared.backbone.memory_format = torch.channels_last
    prepared.inference_only = True
    return prepared
