// C++ CPU kernel of multi-scale deformable attention (forward and backward), parallel with
// at::parallel_for. Layouts and sampling convention: see ms_deform_attn.h.
//
// Forward parallelises over (batch, query): each task owns one output row.
// Backward parallelises over (batch, head): each task owns grad_value[b, :, h, :], so the
// scatter into value positions needs no atomics; grad_loc/grad_attn entries are written once.
// Narrow ATen headers (not ATen/ATen.h) keep the first-use build short.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>

#include <cmath>
#include <vector>

#include "ms_deform_attn.h"

namespace motrv3_msda {
namespace {

// Bilinear corners of one sampling location on one level.
template <typename scalar_t>
struct Corners {
  bool inside = false;  // any part of the 2x2 neighbourhood overlaps the map
  int64_t y0 = 0, x0 = 0;
  scalar_t ly = 0, lx = 0;  // fractional parts
  // Offsets (in positions, relative to the level start) of the four corners, -1 when outside.
  int64_t pos[4] = {-1, -1, -1, -1};
  scalar_t weight[4] = {0, 0, 0, 0};  // (1-ly)(1-lx), (1-ly)lx, ly(1-lx), ly·lx

  Corners(scalar_t x, scalar_t y, int64_t height, int64_t width) {
    const scalar_t h_im = y * static_cast<scalar_t>(height) - scalar_t(0.5);
    const scalar_t w_im = x * static_cast<scalar_t>(width) - scalar_t(0.5);
    if (!(h_im > -1 && w_im > -1 && h_im < height && w_im < width)) return;
    inside = true;
    y0 = static_cast<int64_t>(std::floor(h_im));
    x0 = static_cast<int64_t>(std::floor(w_im));
    ly = h_im - static_cast<scalar_t>(y0);
    lx = w_im - static_cast<scalar_t>(x0);
    const scalar_t hy = 1 - ly, hx = 1 - lx;
    weight[0] = hy * hx;
    weight[1] = hy * lx;
    weight[2] = ly * hx;
    weight[3] = ly * lx;
    const bool top = y0 >= 0, bottom = y0 + 1 <= height - 1;
    const bool left = x0 >= 0, right = x0 + 1 <= width - 1;
    if (top && left) pos[0] = y0 * width + x0;
    if (top && right) pos[1] = y0 * width + x0 + 1;
    if (bottom && left) pos[2] = (y0 + 1) * width + x0;
    if (bottom && right) pos[3] = (y0 + 1) * width + x0 + 1;
  }
};

// Returns <top, v> and adds coef·top to g. kLanes independent partial sums let the compiler
// vectorise the dot product (one running sum chains every multiply-add in strict FP order);
// the order of additions therefore differs from a sequential sum by rounding only.
template <typename scalar_t>
inline scalar_t dot_and_axpy(const scalar_t* __restrict__ top, const scalar_t* __restrict__ v,
                             scalar_t* __restrict__ g, scalar_t coef, int64_t dim) {
  constexpr int kLanes = 8;
  scalar_t part[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      part[j] += top[d + j] * v[d + j];
      g[d + j] += coef * top[d + j];
    }
  }
  scalar_t sum = 0;
  for (; d < dim; ++d) {
    sum += top[d] * v[d];
    g[d] += coef * top[d];
  }
  for (int j = 0; j < kLanes; ++j) sum += part[j];
  return sum;
}

// kDim > 0 fixes the head dimension at compile time (unrolled, vectorised channel loops);
// kDim == 0 reads it from `runtime_dim`.
template <typename scalar_t, int kDim>
void forward_kernel(const scalar_t* __restrict__ value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn, scalar_t* __restrict__ out,
                    int64_t batch, int64_t length, int64_t heads, int64_t runtime_dim, int64_t queries,
                    int64_t levels, int64_t points) {
  const int64_t dim = kDim > 0 ? kDim : runtime_dim;
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, heads * levels * points));
  at::parallel_for(0, batch * queries, grain, [&](int64_t begin, int64_t end) {
    for (int64_t bq = begin; bq < end; ++bq) {
      const int64_t b = bq / queries;
      scalar_t* out_row = out + bq * heads * dim;
      std::fill(out_row, out_row + heads * dim, scalar_t(0));
      for (int64_t h = 0; h < heads; ++h) {
        scalar_t* acc = out_row + h * dim;
        const int64_t point_base = (bq * heads + h) * levels * points;
        for (int64_t l = 0; l < levels; ++l) {
          const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
          // value[b, starts[l] + pos, h, :]
          const scalar_t* level_value = value + ((b * length + starts[l]) * heads + h) * dim;
          for (int64_t p = 0; p < points; ++p) {
            const int64_t idx = point_base + l * points + p;
            const Corners<scalar_t> c(loc[2 * idx], loc[2 * idx + 1], height, width);
            if (!c.inside) continue;
            const scalar_t a = attn[idx];
            for (int k = 0; k < 4; ++k) {
              if (c.pos[k] < 0) continue;
              const scalar_t coef = a * c.weight[k];
              const scalar_t* v = level_value + c.pos[k] * heads * dim;
              for (int64_t d = 0; d < dim; ++d) acc[d] += coef * v[d];
            }
          }
        }
      }
    }
  });
}

template <typename scalar_t, int kDim>
void backward_kernel(const scalar_t* __restrict__ value, const int64_t* shapes, const int64_t* starts,
                     const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
                     const scalar_t* __restrict__ grad_out, scalar_t* __restrict__ grad_value,
                     scalar_t* __restrict__ grad_loc, scalar_t* __restrict__ grad_attn, int64_t batch,
                     int64_t length, int64_t heads, int64_t runtime_dim, int64_t queries, int64_t levels,
                     int64_t points) {
  const int64_t dim = kDim > 0 ? kDim : runtime_dim;
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / heads, h = bh % heads;
      for (int64_t q = 0; q < queries; ++q) {
        const scalar_t* top = grad_out + ((b * queries + q) * heads + h) * dim;
        const int64_t point_base = ((b * queries + q) * heads + h) * levels * points;
        for (int64_t l = 0; l < levels; ++l) {
          const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
          const int64_t offset = ((b * length + starts[l]) * heads + h) * dim;
          const scalar_t* level_value = value + offset;
          scalar_t* level_grad = grad_value + offset;
          for (int64_t p = 0; p < points; ++p) {
            const int64_t idx = point_base + l * points + p;
            const Corners<scalar_t> c(loc[2 * idx], loc[2 * idx + 1], height, width);
            if (!c.inside) {
              grad_attn[idx] = 0;
              grad_loc[2 * idx] = 0;
              grad_loc[2 * idx + 1] = 0;
              continue;
            }
            const scalar_t a = attn[idx];
            // <top, v_k> for each corner; the sampled value's gradients are combinations of them.
            scalar_t dot[4] = {0, 0, 0, 0};
            for (int k = 0; k < 4; ++k) {
              if (c.pos[k] < 0) continue;
              const scalar_t* v = level_value + c.pos[k] * heads * dim;
              scalar_t* g = level_grad + c.pos[k] * heads * dim;
              dot[k] = dot_and_axpy(top, v, g, a * c.weight[k], dim);
            }
            grad_attn[idx] = c.weight[0] * dot[0] + c.weight[1] * dot[1] + c.weight[2] * dot[2] +
                             c.weight[3] * dot[3];
            const scalar_t hy = 1 - c.ly, hx = 1 - c.lx;
            // d(sample)/d(w_im) and d(sample)/d(h_im); w_im = x·width − 0.5, h_im = y·height − 0.5.
            const scalar_t d_wim = -hy * dot[0] + hy * dot[1] - c.ly * dot[2] + c.ly * dot[3];
            const scalar_t d_him = -hx * dot[0] - c.lx * dot[1] + hx * dot[2] + c.lx * dot[3];
            grad_loc[2 * idx] = a * d_wim * static_cast<scalar_t>(width);
            grad_loc[2 * idx + 1] = a * d_him * static_cast<scalar_t>(height);
          }
        }
      }
    }
  });
}

struct Sizes {
  int64_t batch, length, heads, dim, queries, levels, points;
};

Sizes sizes_of(const at::Tensor& value, const at::Tensor& sampling_loc) {
  return {value.size(0),        value.size(1),        value.size(2),       value.size(3),
          sampling_loc.size(1), sampling_loc.size(3), sampling_loc.size(4)};
}

void check_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
               const at::Tensor& sampling_loc, const at::Tensor& attn_weight) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  TORCH_CHECK(value.device().is_cpu() && sampling_loc.device().is_cpu() && attn_weight.device().is_cpu() &&
                  spatial_shapes.device().is_cpu() && level_start_index.device().is_cpu(),
              "ms_deform_attn (cpu): all inputs must be CPU tensors");
}

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight) {
  check_cpu(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  const Sizes s = sizes_of(value, sampling_loc);
  auto output = at::empty({s.batch, s.queries, s.heads * s.dim}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
    auto run = [&](auto kernel) {
      kernel(value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
             sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
             s.batch, s.length, s.heads, s.dim, s.queries, s.levels, s.points);
    };
    switch (s.dim) {
      case 32: run(forward_kernel<scalar_t, 32>); break;
      case 64: run(forward_kernel<scalar_t, 64>); break;
      case 16: run(forward_kernel<scalar_t, 16>); break;
      default: run(forward_kernel<scalar_t, 0>);
    }
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_loc, const at::Tensor& attn_weight, const at::Tensor& grad_output) {
  check_cpu(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  const Sizes s = sizes_of(value, sampling_loc);
  TORCH_CHECK(grad_output.is_contiguous() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == s.batch * s.queries * s.heads * s.dim,
              "ms_deform_attn (cpu): grad_output must be a contiguous [B, Q, H*D] tensor of value's dtype");
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::empty_like(sampling_loc);
  auto grad_attn = at::empty_like(attn_weight);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
    auto run = [&](auto kernel) {
      kernel(value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
             sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
             grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), s.batch,
             s.length, s.heads, s.dim, s.queries, s.levels, s.points);
    };
    switch (s.dim) {
      case 32: run(backward_kernel<scalar_t, 32>); break;
      case 64: run(backward_kernel<scalar_t, 64>); break;
      case 16: run(backward_kernel<scalar_t, 16>); break;
      default: run(backward_kernel<scalar_t, 0>);
    }
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace motrv3_msda

TORCH_LIBRARY(motrv3_msda_cpu, m) {
  m.def(
      "forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_loc, "
      "Tensor attn_weight) -> Tensor");
  m.def(
      "backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_loc, "
      "Tensor attn_weight, Tensor grad_output) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(motrv3_msda_cpu, CPU, m) {
  m.impl("forward", &motrv3_msda::ms_deform_attn_cpu_forward);
  m.impl("backward", &motrv3_msda::ms_deform_attn_cpu_backward);
}
