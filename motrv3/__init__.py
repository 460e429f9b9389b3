"""MOTRv3: end-to-end multi-object tracking with release-fetch supervision (model library).

The public names load on first use (PEP 562): `import motrv3.config` stays free of torch, so the
pipeline's steps that only read params or scores start in a fraction of the time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name → the module that defines it
_EXPORTS = {
    "import_state_dict": "motrv3.checkpoint",
    "load_checkpoint": "motrv3.checkpoint",
    "save_checkpoint": "motrv3.checkpoint",
    "Components": "motrv3.components",
    "build": "motrv3.components",
    "LossConfig": "motrv3.config",
    "ModelConfig": "motrv3.config",
    "MOTRv3Config": "motrv3.config",
    "PLDConfig": "motrv3.config",
    "RFSConfig": "motrv3.config",
    "TGDConfig": "motrv3.config",
    "TrackingConfig": "motrv3.config",
    "ClipCriterion": "motrv3.criterion",
    "build_criterion": "motrv3.criterion",
    "export_onnx": "motrv3.export",
    "optimize_for_inference": "motrv3.inference",
    "MOTR": "motrv3.model",
    "build_model": "motrv3.model",
    "OnnxFrameNetwork": "motrv3.onnx_network",
    "load_onnx": "motrv3.onnx_network",
    "clip_forward": "motrv3.runner",
    "AssignmentStats": "motrv3.stats",
    "ClipResult": "motrv3.structures",
    "FrameLossResult": "motrv3.structures",
    "FrameOutput": "motrv3.structures",
    "Track": "motrv3.tracker",
    "Tracker": "motrv3.tracker",
    "detect": "motrv3.tracker",
    "TrackState": "motrv3.tracks",
}

__all__ = [
    "MOTR",
    "AssignmentStats",
    "ClipCriterion",
    "ClipResult",
    "Components",
    "FrameLossResult",
    "FrameOutput",
    "LossConfig",
    "MOTRv3Config",
    "ModelConfig",
    "OnnxFrameNetwork",
    "PLDConfig",
    "RFSConfig",
    "TGDConfig",
    "Track",
    "TrackState",
    "Tracker",
    "TrackingConfig",
    "build",
    "build_criterion",
    "build_model",
    "clip_forward",
    "detect",
    "export_onnx",
    "import_state_dict",
    "load_checkpoint",
    "load_onnx",
    "optimize_for_inference",
    "save_checkpoint",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:  # a submodule (motrv3.config, motrv3.ops, ...) or a real AttributeError
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as missing:
            if missing.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from motrv3.checkpoint import import_state_dict, load_checkpoint, save_checkpoint
    from motrv3.components import Components, build
    from motrv3.config import (
        LossConfig,
        ModelConfig,
        MOTRv3Config,
        PLDConfig,
        RFSConfig,
        TGDConfig,
        TrackingConfig,
    )
    from motrv3.criterion import ClipCriterion, build_criterion
    from motrv3.export import export_onnx
    from motrv3.inference import optimize_for_inference
    from motrv3.model import MOTR, build_model
    from motrv3.onnx_network import OnnxFrameNetwork, load_onnx
    from motrv3.runner import clip_forward
    from motrv3.stats import AssignmentStats
    from motrv3.structures import ClipResult, FrameLossResult, FrameOutput
    from motrv3.tracker import Track, Tracker, detect
    from motrv3.tracks import TrackState
