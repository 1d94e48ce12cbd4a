// CPU kernel of KerasDluGemmInfo (dlu_gemm.h).
#include "dlu_gemm.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

class DluGemmInfoOp : public ::tensorflow::OpKernel {
 public:
  explicit DluGemmInfoOp(::tensorflow::OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(::tensorflow::OpKernelContext* context) override {
    const GemmInfo info = GetGemmInfo();
    ::tensorflow::Tensor *backend, *detail, *counters;
    OP_REQUIRES_OK(context, context->allocate_output(0, {}, &backend));
    OP_REQUIRES_OK(context, context->allocate_output(1, {}, &detail));
    OP_REQUIRES_OK(context, context->allocate_output(2, {3}, &counters));
    backend->scalar<::tensorflow::tstring>()() = info.backend;
    detail->scalar<::tensorflow::tstring>()() = info.detail;
    counters->vec<int64_t>()(0) = info.primitives_created;
    counters->vec<int64_t>()(1) = info.cache_hits;
    counters->vec<int64_t>()(2) = info.float_products;
  }
};

REGISTER_KERNEL_BUILDER(Name("KerasDluGemmInfo").Device(::tensorflow::DEVICE_CPU),
                        DluGemmInfoOp);

}  // namespace keras_dlu
