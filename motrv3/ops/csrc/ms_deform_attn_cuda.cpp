// Operator registration of the CUDA kernel (namespace motrv3_msda_cuda, same schema as the CPU one).
#include <torch/library.h>

#include "ms_deform_attn.h"

TORCH_LIBRARY(motrv3_msda_cuda, m) {
  m.def(
      "forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_loc, "
      "Tensor attn_weight) -> Tensor");
  m.def(
      "backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_loc, "
      "Tensor attn_weight, Tensor grad_output) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(motrv3_msda_cuda, CUDA, m) {
  m.impl("forward", &motrv3_msda::cuda_forward);
  m.impl("backward", &motrv3_msda::cuda_backward);
}
