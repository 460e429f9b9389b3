"""Custom operators of the model library: multi-scale deformable attention (Deformable DETR)."""

from motrv3.ops.modules import MSDeformAttn
from motrv3.ops.ms_deform_attn import available_impls, ms_deform_attn, ms_deform_attn_pytorch

__all__ = ["MSDeformAttn", "available_impls", "ms_deform_attn", "ms_deform_attn_pytorch"]
