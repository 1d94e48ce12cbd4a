// CPU kernel of KerasDluMatmul: input checks, then DluMatmulCpu (dlu_matmul_cpu.h).
#include "dlu_matmul_cpu.h"
#include "dlu_op_inputs.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

class DluMatmulCpuOp : public OpKernel {
 public:
  explicit DluMatmulCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, ReadMatmulAttrs(context, &attrs_));
  }

  void Compute(OpKernelContext* context) override {
    DluMatmulArgs args;
    OP_REQUIRES_OK(context, ReadMatmulProblem(context, attrs_, &args));
    Tensor* product = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({args.m, args.n}), &product));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({3, kHistogramBins}), &stats));
    args.a = context->input(0).flat<float>().data();
    args.b = context->input(1).flat<float>().data();
    args.product = product->flat<float>().data();
    args.stats = stats->flat<int64_t>().data();
    DluMatmulCpu(args);
  }

 private:
  DluMatmulAttrs attrs_;
};

REGISTER_KERNEL_BUILDER(Name("KerasDluMatmul").Device(::tensorflow::DEVICE_CPU),
                        DluMatmulCpuOp);

}  // namespace keras_dlu
