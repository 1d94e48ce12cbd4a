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
    OP_REQUIRES_OK(context, context->GetAttr("bits", &bits_));
    OP_REQUIRES(context, bits_ == 8 || bits_ == 16,
                absl::InvalidArgumentError(absl::StrCat("`bits` must be 8 or 16; got ", bits_)));
    OP_REQUIRES_OK(context, ReadRounding(context, &stochastic_));
    OP_REQUIRES_OK(context, context->GetAttr("transpose_a", &transpose_a_));
    OP_REQUIRES_OK(context, context->GetAttr("transpose_b", &transpose_b_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& a = context->input(0);
    const Tensor& b = context->input(1);
    OP_REQUIRES(context, a.dims() == 2,
                absl::InvalidArgumentError(absl::StrCat(
                    "`a` must be a matrix (rank 2); got shape ", a.shape().DebugString())));
    OP_REQUIRES(context, b.dims() == 2,
                absl::InvalidArgumentError(absl::StrCat(
                    "`b` must be a matrix (rank 2); got shape ", b.shape().DebugString())));
    DluMatmulArgs args;
    args.m = a.dim_size(transpose_a_ ? 1 : 0);
    args.k = a.dim_size(transpose_a_ ? 0 : 1);
    args.n = b.dim_size(transpose_b_ ? 0 : 1);
    const int64_t kb = b.dim_size(transpose_b_ ? 1 : 0);
    OP_REQUIRES(context, args.k == kb,
                absl::InvalidArgumentError(absl::StrCat(
                    "inner dimensions of `a` and `b` do not match: ", a.shape().DebugString(),
                    " and ", b.shape().DebugString())));
    OP_REQUIRES_OK(context, ReadExponent(context->input(2), "a_exponent", &args.a_exponent));
    OP_REQUIRES_OK(context, ReadExponent(context->input(3), "b_exponent", &args.b_exponent));
    const Tensor& seeds = context->input(4);
    OP_REQUIRES(context, seeds.dims() == 1 && seeds.dim_size(0) == 2,
                absl::InvalidArgumentError(absl::StrCat(
                    "`seeds` must be an int64 vector of 2; got shape ",
                    seeds.shape().DebugString())));
    Tensor* product = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({args.m, args.n}), &product));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({3, kHistogramBins}), &stats));
    args.a = a.flat<float>().data();
    args.b = b.flat<float>().data();
    args.transpose_a = transpose_a_;
    args.transpose_b = transpose_b_;
    args.bits = bits_;
    args.stochastic = stochastic_;
    args.seed_a = static_cast<uint64_t>(seeds.vec<int64_t>()(0));
    args.seed_b = static_cast<uint64_t>(seeds.vec<int64_t>()(1));
    args.product = product->flat<float>().data();
    args.stats = stats->flat<int64_t>().data();
    DluMatmulCpu(args);
  }

 private:
  int bits_;
  bool stochastic_, transpose_a_, transpose_b_;
};

REGISTER_KERNEL_BUILDER(Name("KerasDluMatmul").Device(::tensorflow::DEVICE_CPU),
                        DluMatmulCpuOp);

}  // namespace keras_dlu
