"""MOTRv3: end-to-end multi-object tracking with release-fetch supervision (model library)."""

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
