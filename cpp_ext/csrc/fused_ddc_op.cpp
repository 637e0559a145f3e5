// torch.ops.edgeseg.fused_ddc: the schema (defined once, here) and its CPU implementation.
//
// The CUDA implementation is registered from csrc/cuda/fused_ddc_op_cuda.cu when the extension is
// built with CUDA. Importing the module edgeseg._C runs the registrations below.
#include <Python.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "edgeseg/fused_ddc_cpu.h"
#include "fused_ddc_checks.h"

namespace edgeseg {
namespace fused_ddc {
namespace {

at::Tensor fused_ddc_cpu(const at::Tensor& x, const at::Tensor& weight, c10::IntArrayRef dilations,
                         const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& pooled,
                         const std::optional<at::Tensor>& residual) {
    const Shape s = check_args(x, weight, dilations, scale, shift, pooled, residual);
    TORCH_CHECK(x.scalar_type() == at::kFloat, "fused_ddc: the CPU kernel is FP32 only, got ", x.scalar_type());
    TORCH_INTERNAL_ASSERT(x.device().is_cpu());
    const at::Tensor xc = x.contiguous(), wc = weight.contiguous(), sc = scale.contiguous(),
                     shc = shift.contiguous(), pc = pooled.contiguous();
    const at::Tensor rc = residual.has_value() ? residual->contiguous() : at::Tensor();
    at::Tensor y = at::empty({s.n, kBranches * s.c, s.h, s.w}, x.options());
    // Follow torch.set_num_threads() so the op shares the CPU like every other ATen kernel.
    forward_cpu(s, xc.const_data_ptr<float>(), wc.const_data_ptr<float>(), sc.const_data_ptr<float>(),
                shc.const_data_ptr<float>(), pc.const_data_ptr<float>(),
                rc.defined() ? rc.const_data_ptr<float>() : nullptr, y.mutable_data_ptr<float>(),
                at::get_num_threads());
    return y;
}

}  // namespace

TORCH_LIBRARY(edgeseg, m) {
    m.def("fused_ddc(Tensor x, Tensor weight, int[4] dilations, Tensor scale, Tensor shift, Tensor pooled, "
          "Tensor? residual) -> Tensor");
}

TORCH_LIBRARY_IMPL(edgeseg, CPU, m) { m.impl("fused_ddc", &fused_ddc_cpu); }

}  // namespace fused_ddc
}  // namespace edgeseg

// A Python module with no functions: `import edgeseg._C` only loads the library so that the
// registrations above run (the ops are reached through torch.ops.edgeseg).
extern "C" PyObject* PyInit__C(void) {
    static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "edgeseg fused ops (torch.ops.edgeseg)", -1,
                                 nullptr, nullptr, nullptr, nullptr, nullptr};
    return PyModule_Create(&module);
}
