// CPU kernel of KerasDluQuantize (fake quantization): DluQuantizeCpu (dlu_matmul_cpu.h).
#include "dlu_matmul_cpu.h"
#include "dlu_op_inputs.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

template <typename T>
class DluQuantizeCpuOp : public OpKernel {
 public:
  explicit DluQuantizeCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, ReadQuantizeAttrs(context, &bits_, &stochastic_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    int exponent;
    uint64_t seed;
    OP_REQUIRES_OK(context, ReadQuantizeInputs(context, &exponent, &seed));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    DluQuantizeCpu(x.flat<T>().data(), y->flat<T>().data(), x.NumElements(), exponent, bits_,
                   stochastic_, seed);
  }

 private:
  int bits_;
  bool stochastic_;
};

#define REGISTER_CPU(T)                                                             \
  REGISTER_KERNEL_BUILDER(                                                          \
      Name("KerasDluQuantize").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      DluQuantizeCpuOp<T>);
REGISTER_CPU(float);
REGISTER_CPU(double);
#undef REGISTER_CPU

}  // namespace keras_dlu
