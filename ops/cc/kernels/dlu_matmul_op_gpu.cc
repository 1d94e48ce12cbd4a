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
    OP_REQUIRES_OK(context, ReadMatmulAttrs(context, &attrs_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& a = context->input(0);
    const Tensor& b = context->input(1);
    cuda::DluMatmulProblem p;
    OP_REQUIRES_OK(context, ReadMatmulProblem(context, attrs_, &p));
    Tensor* product = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({p.m, p.n}), &product));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({3, kHistogramBins}), &stats));
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
  DluMatmulAttrs attrs_;
};

template <typename T>
class DluQuantizeGpuOp : public OpKernel {
 public:
  explicit DluQuantizeGpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, ReadQuantizeAttrs(context, &bits_, &stochastic_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    int exponent;
    uint64_t seed;
    OP_REQUIRES_OK(context, ReadQuantizeInputs(context, &exponent, &seed));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    const cudaError_t status = cuda::DluQuantize(
        x.flat<T>().data(), y->flat<T>().data(), x.NumElements(), exponent, bits_, stochastic_,
        seed, context->eigen_gpu_device().stream());
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
