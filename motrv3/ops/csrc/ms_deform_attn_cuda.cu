// CUDA kernel of multi-scale deformable attention (forward and backward).
// Layouts and sampling convention: see ms_deform_attn.h.
//
// One thread per output element (b, q, h, d): consecutive threads read consecutive channels of
// the same value pixel (coalesced). Backward scatters into grad_value with atomicAdd (several
// queries hit one pixel) and reduces the per-channel terms of grad_loc/grad_attn over the
// channels of a head with warp shuffles.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "ms_deform_attn.h"

namespace motrv3_msda {
namespace {

constexpr int kThreads = 256;  // a multiple of the warp size: shuffles rely on aligned lanes

// Corner positions and fractional parts of location (x, y) on a height×width level.
template <typename scalar_t>
__device__ __forceinline__ bool locate(scalar_t x, scalar_t y, int64_t height, int64_t width, int64_t pos[4],
                                       scalar_t& ly, scalar_t& lx) {
  const scalar_t h_im = y * static_cast<scalar_t>(height) - scalar_t(0.5);
  const scalar_t w_im = x * static_cast<scalar_t>(width) - scalar_t(0.5);
  if (!(h_im > -1 && w_im > -1 && h_im < height && w_im < width)) return false;
  const int64_t y0 = static_cast<int64_t>(floor(h_im));
  const int64_t x0 = static_cast<int64_t>(floor(w_im));
  ly = h_im - static_cast<scalar_t>(y0);
  lx = w_im - static_cast<scalar_t>(x0);
  const bool top = y0 >= 0, bottom = y0 + 1 <= height - 1;
  const bool left = x0 >= 0, right = x0 + 1 <= width - 1;
  pos[0] = (top && left) ? y0 * width + x0 : -1;
  pos[1] = (top && right) ? y0 * width + x0 + 1 : -1;
  pos[2] = (bottom && left) ? (y0 + 1) * width + x0 : -1;
  pos[3] = (bottom && right) ? (y0 + 1) * width + x0 + 1 : -1;
  return true;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                               const scalar_t* __restrict__ attn, scalar_t* __restrict__ out, int64_t total,
                               int64_t length, int64_t heads, int64_t dim, int64_t queries, int64_t levels,
                               int64_t points) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t d = idx % dim;
    const int64_t bqh = idx / dim;  // ((b * Q + q) * H + h)
    const int64_t h = bqh % heads;
    const int64_t b = bqh / heads / queries;
    const int64_t stride = heads * dim;  // between neighbouring pixels of value
    scalar_t acc = 0;
    for (int64_t l = 0; l < levels; ++l) {
      const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
      const scalar_t* level_value = value + ((b * length + starts[l]) * heads + h) * dim + d;
      for (int64_t p = 0; p < points; ++p) {
        const int64_t point = (bqh * levels + l) * points + p;
        int64_t pos[4];
        scalar_t ly, lx;
        if (!locate(loc[2 * point], loc[2 * point + 1], height, width, pos, ly, lx)) continue;
        const scalar_t hy = 1 - ly, hx = 1 - lx;
        const scalar_t weight[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
        scalar_t sample = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (pos[k] >= 0) sample += weight[k] * level_value[pos[k] * stride];
        }
        acc += attn[point] * sample;
      }
    }
    out[idx] = acc;
  }
}

// Sum of v over groups of `width` consecutive lanes (width a power of two ≤ 32); every lane of
// the warp must call it.
template <typename scalar_t>
__device__ __forceinline__ scalar_t group_sum(scalar_t v, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset, width);
  return v;
}

// Launched with exactly ceil(total / kThreads) blocks and no early exit: tail threads carry
// zeros through the shuffles. `width` is the lane group reduced together: dim when dim divides
// 32 (one writer per point, plain stores), 32 when 32 divides dim (one atomicAdd per warp),
// else 1 (one atomicAdd per channel).
template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                                const scalar_t* __restrict__ attn, const scalar_t* __restrict__ grad_out,
                                scalar_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                                scalar_t* __restrict__ grad_attn, int64_t total, int64_t length, int64_t heads,
                                int64_t dim, int64_t queries, int64_t levels, int64_t points, int width) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool valid = idx < total;
  const int64_t safe = valid ? idx : 0;
  const int64_t d = safe % dim;
  const int64_t bqh = safe / dim;
  const int64_t h = bqh % heads;
  const int64_t b = bqh / heads / queries;
  const int64_t stride = heads * dim;
  const bool single_writer = width == dim;
  const scalar_t top = valid ? grad_out[idx] : scalar_t(0);
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t height = shapes[2 * l], width_l = shapes[2 * l + 1];
    const int64_t offset = ((b * length + starts[l]) * heads + h) * dim + d;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t point = (bqh * levels + l) * points + p;
      scalar_t g_attn = 0, g_x = 0, g_y = 0;
      int64_t pos[4];
      scalar_t ly, lx;
      if (valid && locate(loc[2 * point], loc[2 * point + 1], height, width_l, pos, ly, lx)) {
        const scalar_t a = attn[point];
        const scalar_t hy = 1 - ly, hx = 1 - lx;
        const scalar_t weight[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
        scalar_t v[4] = {0, 0, 0, 0};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (pos[k] < 0) continue;
          v[k] = value[offset + pos[k] * stride];
          atomicAdd(grad_value + offset + pos[k] * stride, a * weight[k] * top);
        }
        const scalar_t sample = weight[0] * v[0] + weight[1] * v[1] + weight[2] * v[2] + weight[3] * v[3];
        g_attn = top * sample;
        // d(sample)/d(w_im), d(sample)/d(h_im); w_im = x·width − 0.5, h_im = y·height − 0.5.
        const scalar_t d_wim = -hy * v[0] + hy * v[1] - ly * v[2] + ly * v[3];
        const scalar_t d_him = -hx * v[0] - lx * v[1] + hx * v[2] + lx * v[3];
        g_x = top * a * d_wim * static_cast<scalar_t>(width_l);
        g_y = top * a * d_him * static_cast<scalar_t>(height);
      }
      g_attn = group_sum(g_attn, width);
      g_x = group_sum(g_x, width);
      g_y = group_sum(g_y, width);
      if (valid && d % width == 0) {
        if (single_writer) {
          grad_attn[point] = g_attn;
          grad_loc[2 * point] = g_x;
          grad_loc[2 * point + 1] = g_y;
        } else {
          atomicAdd(grad_attn + point, g_attn);
          atomicAdd(grad_loc + 2 * point, g_x);
          atomicAdd(grad_loc + 2 * point + 1, g_y);
        }
      }
    }
  }
}

void check_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                const at::Tensor& sampling_loc, const at::Tensor& attn_weight) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  TORCH_CHECK(value.is_cuda() && spatial_shapes.device() == value.device() &&
                  level_start_index.device() == value.device() && sampling_loc.device() == value.device() &&
                  attn_weight.device() == value.device(),
              "ms_deform_attn (cuda): all inputs must be on the same CUDA device");
}

int reduce_width(int64_t dim) {
  if (dim <= 32 && 32 % dim == 0) return static_cast<int>(dim);
  if (dim % 32 == 0) return 32;
  return 1;
}

}  // namespace

at::Tensor cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                        const at::Tensor& attn_weight) {
  check_cuda(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t batch = value.size(0), length = value.size(1), heads = value.size(2), dim = value.size(3);
  const int64_t queries = sampling_loc.size(1), levels = sampling_loc.size(3), points = sampling_loc.size(4);
  auto output = at::empty({batch, queries, heads * dim}, value.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 30);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "motrv3_msda_cuda_forward", [&] {
    forward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), total,
        length, heads, dim, queries, levels, points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cuda_backward(const at::Tensor& value,
                                                             const at::Tensor& spatial_shapes,
                                                             const at::Tensor& level_start_index,
                                                             const at::Tensor& sampling_loc,
                                                             const at::Tensor& attn_weight,
                                                             const at::Tensor& grad_output) {
  check_cuda(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t batch = value.size(0), length = value.size(1), heads = value.size(2), dim = value.size(3);
  const int64_t queries = sampling_loc.size(1), levels = sampling_loc.size(3), points = sampling_loc.size(4);
  TORCH_CHECK(grad_output.is_contiguous() && grad_output.device() == value.device() &&
                  grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == batch * queries * heads * dim,
              "ms_deform_attn (cuda): grad_output must be a contiguous [B, Q, H*D] tensor like value");
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::zeros_like(sampling_loc);
  auto grad_attn = at::zeros_like(attn_weight);
  const int64_t total = batch * queries * heads * dim;
  if (total == 0) return {grad_value, grad_loc, grad_attn};
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "ms_deform_attn (cuda): input too large for one launch");
  const int width = reduce_width(dim);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "motrv3_msda_cuda_backward", [&] {
    backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
        grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), total,
        length, heads, dim, queries, levels, points, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace motrv3_msda
