"""The tiny model configuration the model-level tests share (fast on a 2-core CPU)."""

from __future__ import annotations

from motrv3.config import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    values = dict(
        backbone="resnet10t",
        d_model=32,
        nheads=2,
        enc_layers=1,
        dec_layers=2,
        dim_feedforward=64,
        enc_n_points=2,
        dec_n_points=2,
        num_queries=4,
        deform_attn_impl="pytorch",
    )
    values.update(overrides)
    return ModelConfig(**values)
