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
    OP_REQUIRES_OK(context, context->GetAttr("bits", &bits_));
    OP_REQUIRES(context, bits_ >= 2 && bits_ <= 16,
                absl::InvalidArgumentError(
                    absl::StrCat("`bits` must be in [2, 16]; got ", bits_)));
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
    DluQuantizeCpu(x.flat<T>().data(), y->flat<T>().data(), x.NumElements(), exponent, bits_,
                   stochastic_, static_cast<uint64_t>(seed.scalar<int64_t>()()));
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
