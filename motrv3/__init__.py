"""MOTRv3: end-to-end multi-object tracking with release-fetch supervision (model library)."""

from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig

__all__ = ["LossConfig", "ModelConfig", "PLDConfig", "RFSConfig", "TGDConfig", "TrackingConfig"]
