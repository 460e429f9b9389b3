// Multi-scale deformable attention (Deformable DETR, Eq. 3): sampling core shared declarations.
//
// Layouts (all contiguous):
//   value              [B, S, H, D]   projected values, levels concatenated row-major
//   spatial_shapes     [L, 2] int64   (h, w) of each level
//   level_start_index  [L]    int64   first position of each level in S
//   sampling_loc       [B, Q, H, L, P, 2]  (x, y) in [0, 1]
//   attn_weight        [B, Q, H, L, P]
//   output             [B, Q, H * D]
// A location (x, y) of a w×h level maps to pixel coordinates (x·w − 0.5, y·h − 0.5): pixel
// centres at (i + 0.5) / size, bilinear, zero outside (grid_sample's align_corners=False, zeros).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace motrv3_msda {

inline void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                         const at::Tensor& attn_weight) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be [B, S, H, D]");
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be [L, 2]");
  TORCH_CHECK(sampling_loc.dim() == 6 && sampling_loc.size(5) == 2,
              "ms_deform_attn: sampling_loc must be [B, Q, H, L, P, 2]");
  TORCH_CHECK(attn_weight.dim() == 5, "ms_deform_attn: attn_weight must be [B, Q, H, L, P]");
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
              "ms_deform_attn: level_start_index must be [L]");
  TORCH_CHECK(sampling_loc.size(0) == value.size(0) && sampling_loc.size(2) == value.size(2) &&
                  sampling_loc.size(3) == spatial_shapes.size(0),
              "ms_deform_attn: sampling_loc batch/heads/levels do not match value/spatial_shapes");
  for (int64_t d = 0; d < 5; ++d) {
    TORCH_CHECK(attn_weight.size(d) == sampling_loc.size(d),
                "ms_deform_attn: attn_weight shape does not match sampling_loc");
  }
  TORCH_CHECK(value.is_contiguous() && sampling_loc.is_contiguous() && attn_weight.is_contiguous() &&
                  spatial_shapes.is_contiguous() && level_start_index.is_contiguous(),
              "ms_deform_attn: inputs must be contiguous");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_loc.scalar_type() == value.scalar_type() &&
                  attn_weight.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_loc and attn_weight must share a dtype");
}

}  // namespace motrv3_msda

namespace motrv3_msda {

// CUDA entry points (ms_deform_attn_cuda.cu), registered in ms_deform_attn_cuda.cpp.
at::Tensor cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                        const at::Tensor& attn_weight);

std::tuple<at::Tensor, at::Tensor, at::Tensor> cuda_backward(const at::Tensor& value,
                                                             const at::Tensor& spatial_shapes,
                                                             const at::Tensor& level_start_index,
                                                             const at::Tensor& sampling_loc,
                                                             const at::Tensor& attn_weight,
                                                             const at::Tensor& grad_output);

}  // namespace motrv3_msda
