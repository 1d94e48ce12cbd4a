// CPU kernels of KerasDluMatmulFused (DluMatmulCpu keeping the 8-bit digits of both
// operands) and KerasDluMatmulFusedGrad (DluMatmulBackwardCpu): input checks and outputs.
#include "dlu_matmul_cpu.h"
#include "dlu_op_inputs.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

class DluMatmulFusedCpuOp : public OpKernel {
 public:
  explicit DluMatmulFusedCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    attrs_ = {8, false, false, false};
    OP_REQUIRES_OK(context, ReadRounding(context, &attrs_.stochastic));
    OP_REQUIRES_OK(context, context->GetAttr("product_histograms", &product_histogram_));
  }

  void Compute(OpKernelContext* context) override {
    DluMatmulArgs args;
    OP_REQUIRES_OK(context, ReadMatmulProblem(context, attrs_, &args));
    Tensor *product, *stats, *a_digits, *a_flags, *b_digits, *b_flags;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({args.m, args.n}), &product));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({3, kHistogramBins}), &stats));
    OP_REQUIRES_OK(context, context->allocate_output(2, context->input(0).shape(), &a_digits));
    OP_REQUIRES_OK(context, context->allocate_output(3, TensorShape({args.m + args.k}), &a_flags));
    OP_REQUIRES_OK(context, context->allocate_output(4, context->input(1).shape(), &b_digits));
    OP_REQUIRES_OK(context, context->allocate_output(5, TensorShape({args.k + args.n}), &b_flags));
    args.a = context->input(0).flat<float>().data();
    args.b = context->input(1).flat<float>().data();
    args.product = product->flat<float>().data();
    args.stats = stats->flat<int64_t>().data();
    args.a_digits = reinterpret_cast<int8_t*>(a_digits->flat<uint8_t>().data());
    args.a_flags = a_flags->flat<uint8_t>().data();
    args.b_digits = b_digits->flat<int8_t>().data();
    args.b_flags = b_flags->flat<uint8_t>().data();
    args.product_histogram = product_histogram_;
    DluMatmulCpu(args);
  }

 private:
  DluMatmulAttrs attrs_;
  bool product_histogram_ = true;
};

// Checks that `tensor` is a [rows + cols] flag vector of the digits named `name`.
absl::Status CheckFlags(const Tensor& tensor, const char* name, int64_t length) {
  if (tensor.dims() != 1 || tensor.dim_size(0) != length)
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be a vector of ", length,
                                                   " (rows + columns of its digits); got shape ",
                                                   tensor.shape().DebugString()));
  return absl::OkStatus();
}

class DluMatmulFusedGradCpuOp : public OpKernel {
 public:
  explicit DluMatmulFusedGradCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, ReadRounding(context, &stochastic_));
    OP_REQUIRES_OK(context, context->GetAttr("compute_grad_a", &grad_a_));
    OP_REQUIRES_OK(context, context->GetAttr("product_histograms", &product_histograms_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& grad = context->input(0);
    const Tensor& a = context->input(1);
    const Tensor& b = context->input(3);
    OP_REQUIRES(context, grad.dims() == 2 && a.dims() == 2 && b.dims() == 2,
                absl::InvalidArgumentError("`grad`, `a_digits` and `b_digits` must be matrices"));
    DluMatmulBackwardArgs args;
    args.m = grad.dim_size(0);
    args.n = grad.dim_size(1);
    args.k = a.dim_size(1);
    OP_REQUIRES(context, a.dim_size(0) == args.m && b.dim_size(0) == args.k &&
                             b.dim_size(1) == args.n,
                absl::InvalidArgumentError(absl::StrCat(
                    "`grad` [M, N], `a_digits` [M, K] and `b_digits` [K, N] do not match: ",
                    grad.shape().DebugString(), ", ", a.shape().DebugString(), ", ",
                    b.shape().DebugString())));
    OP_REQUIRES_OK(context, CheckFlags(context->input(2), "a_flags", args.m + args.k));
    OP_REQUIRES_OK(context, CheckFlags(context->input(4), "b_flags", args.k + args.n));
    OP_REQUIRES_OK(context, ReadExponent(context->input(5), "a_exponent", &args.a_exponent));
    OP_REQUIRES_OK(context, ReadExponent(context->input(6), "b_exponent", &args.b_exponent));
    OP_REQUIRES_OK(context,
                   ReadExponent(context->input(7), "grad_exponent", &args.grad_exponent));
    const Tensor& seed = context->input(8);
    OP_REQUIRES(context, ::tensorflow::TensorShapeUtils::IsScalar(seed.shape()),
                absl::InvalidArgumentError("`seed` must be an int64 scalar"));
    args.seed_grad = static_cast<uint64_t>(seed.scalar<int64_t>()());
    args.stochastic = stochastic_;
    Tensor *grad_a, *grad_b, *stats;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, grad_a_ ? a.shape() : TensorShape({0, args.k}), &grad_a));
    OP_REQUIRES_OK(context, context->allocate_output(1, b.shape(), &grad_b));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({3, kHistogramBins}), &stats));
    args.grad = grad.flat<float>().data();
    args.a_digits = a.flat<uint8_t>().data();
    args.a_flags = context->input(2).flat<uint8_t>().data();
    args.b_digits = b.flat<int8_t>().data();
    args.b_flags = context->input(4).flat<uint8_t>().data();
    args.grad_a = grad_a_ ? grad_a->flat<float>().data() : nullptr;
    args.grad_b = grad_b->flat<float>().data();
    args.stats = stats->flat<int64_t>().data();
    args.product_histograms = product_histograms_;
    DluMatmulBackwardCpu(args);
  }

 private:
  bool stochastic_ = false;
  bool grad_a_ = true;
  bool product_histograms_ = true;
};

REGISTER_KERNEL_BUILDER(Name("KerasDluMatmulFused").Device(::tensorflow::DEVICE_CPU),
                        DluMatmulFusedCpuOp);
REGISTER_KERNEL_BUILDER(Name("KerasDluMatmulFusedGrad").Device(::tensorflow::DEVICE_CPU),
                        DluMatmulFusedGradCpuOp);

}  // namespace keras_dlu
