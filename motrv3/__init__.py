"""MOTRv3: end-to-end multi-object tracking with release-fetch supervision (model library)."""

from motrv3.checkpoint import import_state_dict, load_checkpoint, save_checkpoint
from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig
from motrv3.criterion import build_criterion
from motrv3.inference import optimize_for_inference, retain_freed_memory
from motrv3.model import MOTR, build_model
from motrv3.runner import clip_forward
from motrv3.stats import AssignmentStats
from motrv3.structures import ClipResult, FrameLossResult, FrameOutput
from motrv3.tracker import Track, Tracker, detect
from motrv3.tracks import TrackState

__all__ = [
    "MOTR",
    "AssignmentStats",
    "ClipResult",
    "FrameLossResult",
    "FrameOutput",
    "LossConfig",
    "ModelConfig",
    "PLDConfig",
    "RFSConfig",
    "TGDConfig",
    "Track",
    "TrackState",
    "Tracker",
    "TrackingConfig",
    "build_criterion",
    "build_model",
    "clip_forward",
    "detect",
    "import_state_dict",
    "load_checkpoint",
    "optimize_for_inference",
    "retain_freed_memory",
    "save_checkpoint",
]
