// GPU kernels of KerasDluMatmul and KerasDluQuantize: thin adapters from TensorFlow's
// OpKernel to the plain CUDA functions in ops/cuda/dlu_matmul.h. Exponents and seeds live
// in host memory. Compiled only when the library is built with CUDA.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include "cuda/dlu_matmul.h"
#include "dlu_op_inputs.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

class DluMatmulGpuOp : public OpKernel {
 public:
  explicit DluMatmulGpuOp(OpKernelConstruction* context) : OpKernel(context) {
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
    OP_REQUIRES(context, a.dims() == 2 && b.dims() == 2,
                absl::InvalidArgumentError("`a` and `b` must be matrices (rank 2)"));
    cuda::DluMatmulProblem p;
    p.m = a.dim_size(transpose_a_ ? 1 : 0);
    p.k = a.dim_size(transpose_a_ ? 0 : 1);
    p.n = b.dim_size(transpose_b_ ? 0 : 1);
    OP_REQUIRES(context, p.k == b.dim_size(transpose_b_ ? 1 : 0),
                absl::InvalidArgumentError(absl::StrCat(
                    "inner dimensions of `a` and `b` do not match: ", a.shape().DebugString(),
                    " and ", b.shape().DebugString())));
    OP_REQUIRES_OK(context, ReadExponent(context->input(2), "a_exponent", &p.a_exponent));
    OP_REQUIRES_OK(context, ReadExponent(context->input(3), "b_exponent", &p.b_exponent));
    const Tensor& seeds = context->input(4);
    OP_REQUIRES(context, seeds.dims() == 1 && seeds.dim_size(0) == 2,
                absl::InvalidArgumentError("`seeds` must be an int64 vector of 2"));
    p.transpose_a = transpose_a_;
    p.transpose_b = transpose_b_;
    p.bits = bits_;
    p.stochastic = stochastic_;
    p.seed_a = static_cast<uint64_t>(seeds.vec<int64_t>()(0));
    p.seed_b = static_cast<uint64_t>(seeds.vec<int64_t>()(1));
    Tensor* product = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({p.m, p.n}), &product));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({3, 64}), &stats));
    Tensor workspace;
    OP_REQUIRES_OK(context, context->allocate_temp(
        ::tensorflow::DT_INT8,
        TensorShape({static_cast<int64_t>(cuda::DluMatmulWorkspaceBytes(p))}), &workspace));
    const cudaError_t status = cuda::DluMatmul(
        p, a.flat<float>().data(), b.flat<float>().data(), product->flat<float>().data(),
        stats->flat<int64_t>().data(), workspace.flat<int8_t>().data(),
        context->eigen_gpu_device().stream());
    OP_REQUIRES(context, status == cudaSuccess,
                absl::InternalError(absl::StrCat("dlu_matmul CUDA launch failed: ",
                                                 cudaGetErrorString(status))));
  }

 private:
  int bits_;
  bool stochastic_, transpose_a_, transpose_b_;
};

template <typename T>
class DluQuantizeGpuOp : public OpKernel {
 public:
  explicit DluQuantizeGpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("bits", &bits_));
    OP_REQUIRES(context, bits_ >= 2 && bits_ <= 16,
                absl::InvalidArgumentError(absl::StrCat("`bits` must be in [2, 16]; got ", bits_)));
    OP_REQUIRES_OK(context, ReadRounding(context, &stochastic_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    int exponent;
    OP_REQUIRES_OK(context, ReadExponent(context->input(1), "exponent", &exponent));
    const Tensor& seed = context->input(2);
    OP_REQUIRES(context, ::tensorflow::TensorShapeUtils::IsScalar(seed.shape()),
                absl::InvalidArgumentError("`seed` must be an int64 scalar"));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    const cudaError_t status = cuda::DluQuantize(
        x.flat<T>().data(), y->flat<T>().data(), x.NumElements(), exponent, bits_, stochastic_,
        static_cast<uint64_t>(seed.scalar<int64_t>()()), context->eigen_gpu_device().stream());
    OP_REQUIRES(context, status == cudaSuccess,
                absl::InternalError(absl::StrCat("quantize CUDA launch failed: ",
                                                 cudaGetErrorString(status))));
  }

 private:
  int bits_;
  bool stochastic_;
};

REGISTER_KERNEL_BUILDER(Name("KerasDluMatmul")
                            .Device(::tensorflow::DEVICE_GPU)
                            .HostMemory("a_exponent")
                            .HostMemory("b_exponent")
                            .HostMemory("seeds")
                            .HostMemory("grad_exponent"),
                        DluMatmulGpuOp);

#define REGISTER_GPU(T)                                              \
  REGISTER_KERNEL_BUILDER(Name("KerasDluQuantize")                   \
                              .Device(::tensorflow::DEVICE_GPU)      \
                              .TypeConstraint<T>("T")                \
                              .HostMemory("exponent")                \
                              .HostMemory("seed"),                   \
                          DluQuantizeGpuOp<T>);
REGISTER_GPU(float);
REGISTER_GPU(double);
#undef REGISTER_GPU

}  // namespace keras_dlu

#endif  // GOOGLE_CUDA
