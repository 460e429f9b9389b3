"""Multi-scale backbone: a timm feature extractor (strides 8/16/32) with frozen batch norm.

The extra stride-64 level and the input projections live in the model (`MOTR.input_proj`), as in
Deformable DETR, so that imported checkpoints keep their key layout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models._features import FeatureDictNet
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)


@dataclass
class LoadReport:
    """What a weight import did: keys of ours left as initialised, keys of the file not used."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def show(keys: list[str]) -> str:
            return f"{len(keys)}" + (
                f" ({', '.join(keys[:8])}{', …' if len(keys) > 8 else ''})" if keys else ""
            )

        return (
            f"missing {show(self.missing)}; unexpected {show(self.unexpected)}; "
            f"reinitialised {show(self.reinitialised)}"
        )


class FusedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """torchvision's FrozenBatchNorm2d (same buffers and state-dict keys) computed by one fused kernel.

    torchvision's forward is `x * scale + shift`: two passes over the map plus a temporary, which
    cost ~10% of a ResNet-50 frame on CPU; eval-mode `F.batch_norm` does it in one vectorised pass.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below `module` by a FrozenBatchNorm2d (same statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FusedFrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.track_running_stats:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
    return module


# Where the weight files the `paper` profile names come from (docs/reproducing.md).
WEIGHT_SOURCES = {
    "r50_deformable_detr_plus_iterative_bbox_refinement-checkpoint.pth": (
        "the official COCO-pretrained Deformable-DETR (+ iterative box refinement), the file MOTR and "
        "MOTRv2 start from: github.com/fundamentalvision/Deformable-DETR, README 'Main Results' table"
    ),
    "convnext_base.fb_in22k_ft_in1k.safetensors": (
        "timm's ConvNeXt-B ImageNet weights: huggingface.co/timm/convnext_base.fb_in22k_ft_in1k, file "
        "model.safetensors, saved under this name"
    ),
}


def missing_weights_error(field_name: str, path: str | Path) -> FileNotFoundError:
    """A FileNotFoundError naming the params field, the file, and how to obtain it (never downloaded)."""
    source = WEIGHT_SOURCES.get(Path(path).name)
    how = f"download {source}" if source else "give an existing local file"
    return FileNotFoundError(
        f"{field_name}: weights file {path} does not exist; {how} (docs/reproducing.md), or set "
        f"{field_name}: null to train from scratch"
    )


def read_weights(path: str | Path, field_name: str = "model.pretrained") -> dict[str, torch.Tensor]:
    """A state dict from a local .pth/.pt/.bin (torch, weights only) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise missing_weights_error(field_name, path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class Backbone(nn.Module):
    """timm `features_only` network returning the stride-8/16/32 maps of one image [1, 3, H, W].

    With loaded weights (`pretrained`, or later `freeze_stem()` after a checkpoint import) the stem
    and the stages before the stride-8 one are frozen, as Deformable DETR/MOTR freeze the pretrained
    ResNet stem and layer1 and train layer2-4. From scratch nothing is frozen: random frozen layers
    would stay random.
    """

    def __init__(self, name: str, frozen_bn: bool = True, pretrained: str | None = None):
        super().__init__()
        try:
            body = timm.create_model(name, pretrained=False, features_only=True)
        except RuntimeError as err:
            raise ValueError(
                f"model.backbone={name!r}: not a timm model with features_only support ({err})"
            ) from err
        reductions = body.feature_info.reduction()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ValueError(
                f"model.backbone={name!r}: no feature map at stride(s) {missing} (has {reductions})"
            )
        self.level_indices = [reductions.index(s) for s in STRIDES]
        self.num_channels = [body.feature_info.channels()[i] for i in self.level_indices]
        self.body = body
        if pretrained is not None:
            report = self.load_pretrained(pretrained)
            log.info("backbone %s weights from %s: %s", name, pretrained, report)
        if frozen_bn:
            freeze_batch_norm(self.body)
        first_trained = body.feature_info.module_name()[self.level_indices[0]].replace(".", "_")
        if not isinstance(body, FeatureDictNet):  # hook-based feature models: no stem/trunk split
            raise ValueError(
                f"model.backbone={name!r}: timm returned {type(body).__name__}, not a module chain"
            )
        names = list(self.body.keys())
        # Modules before the stride-8 stage: `stem` runs them, `trunk` the rest.
        frozen = names.index(first_trained) if first_trained in names else 0
        self.stem_names, self.trunk_names = names[:frozen], names[frozen:]
        self.stem_frozen = False
        if pretrained is not None:
            self.freeze_stem()
        # Positions of the stride-8/16/32 maps among the trunk's tapped outputs.
        returned_by_stem = sum(name in self.body.return_layers for name in self.stem_names)
        self.trunk_level_indices = [i - returned_by_stem for i in self.level_indices]
        # channels_last lets oneDNN skip layout reorders in inference; `motrv3.inference` sets it.
        self.memory_format = torch.contiguous_format

    def freeze_stem(self) -> None:
        """Stop training the stem (pretrained layers stay as loaded; Deformable DETR's rule)."""
        for name in self.stem_names:
            self.body[name].requires_grad_(False)
        self.stem_frozen = True

    def load_pretrained(self, path: str | Path) -> LoadReport:
        """Load a classification checkpoint of the same timm model from a local file (never downloaded).

        Accepts a bare state dict or one under "model"/"state_dict"; classifier keys come back as
        unexpected. The features model flattens nested module names (`stem.0` -> `stem_0`).
        """
        state = read_weights(path)
        ours = self.body.state_dict()
        by_original_name = {}
        for key in ours:
            head, _, rest = key.partition(".")
            by_original_name[head.replace("_", ".") + "." + rest] = key
        mapped, unexpected = {}, []
        for key, value in state.items():
            target = key if key in ours else by_original_name.get(key)
            if target is None or ours[target].shape != value.shape:
                unexpected.append(key)
            else:
                mapped[target] = value
        result = self.body.load_state_dict(mapped, strict=False)
        report = LoadReport(missing=sorted(result.missing_keys), unexpected=sorted(unexpected))
        if report.missing:
            log.warning("backbone weights %s: %s", path, report)
        return report

    def stem(self, image: torch.Tensor) -> torch.Tensor:
        """The frozen modules before the stride-8 stage (no parameter here trains).

        Kept out of activation checkpointing by the model: recomputing it would cost ~20% of a
        ResNet-50 forward for nothing, since no gradient flows through it."""
        x = image.contiguous(memory_format=self.memory_format)
        needs_graph = image.requires_grad or any(
            p.requires_grad for name in self.stem_names for p in self.body[name].parameters()
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and needs_graph):
            for name in self.stem_names:
                x = self.body[name](x)
        return x

    def trunk(self, stem: torch.Tensor) -> list[torch.Tensor]:
        """The stride-8/16/32 maps from the stem's output."""
        tapped, x = [], stem
        for name in self.trunk_names:
            x = self.body[name](x)
            if name in self.body.return_layers:
                tapped.append(x)
        return [tapped[i] for i in self.trunk_level_indices]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.trunk(self.stem(image))
