// GPU kernel of KerasDluExponentHistogram: a thin adapter from TensorFlow's OpKernel to the
// plain CUDA function in ops/cuda. Compiled only when the library is built with CUDA.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include "cuda/exponent_histogram.h"
#include "exponent_bin.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

template <typename T>
class ExponentHistogramGpuOp : public OpKernel {
 public:
  explicit ExponentHistogramGpuOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({kHistogramBins}), &output));
    const cudaStream_t stream = context->eigen_gpu_device().stream();
    const cudaError_t status = cuda::ExponentHistogram(
        input.flat<T>().data(), input.NumElements(), output->flat<int64_t>().data(), stream);
    OP_REQUIRES(context, status == cudaSuccess,
                ::tensorflow::errors::Internal("exponent_histogram CUDA launch failed: ",
                                               cudaGetErrorString(status)));
  }
};

#define REGISTER_GPU(T)                                                     \
  REGISTER_KERNEL_BUILDER(Name("KerasDluExponentHistogram")                 \
                              .Device(::tensorflow::DEVICE_GPU)             \
                              .TypeConstraint<T>("T"),                      \
                          ExponentHistogramGpuOp<T>);
REGISTER_GPU(float);
REGISTER_GPU(double);
#undef REGISTER_GPU

}  // namespace keras_dlu

#endif  // GOOGLE_CUDA
