// Shared input checks of the DLU op kernels (CPU and GPU): attribute parsing and the
// exponent range, each error naming the argument and the allowed values.
#ifndef KERAS_DLU_OPS_DLU_OP_INPUTS_H_
#define KERAS_DLU_OPS_DLU_OP_INPUTS_H_

#include <string>

#include "dlu_quantize.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

inline absl::Status ReadRounding(::tensorflow::OpKernelConstruction* context,
                                 bool* stochastic) {
  std::string rounding;
  TF_RETURN_IF_ERROR(context->GetAttr("rounding", &rounding));
  if (rounding != "nearest" && rounding != "stochastic")
    return absl::InvalidArgumentError(absl::StrCat(
        "`rounding` must be 'nearest' or 'stochastic'; got '", rounding, "'"));
  *stochastic = rounding == "stochastic";
  return absl::OkStatus();
}

// Reads a scalar int32 exponent (host memory) and checks its range.
inline absl::Status ReadExponent(const ::tensorflow::Tensor& tensor, const char* name,
                                 int* exponent) {
  if (!::tensorflow::TensorShapeUtils::IsScalar(tensor.shape()))
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be a scalar; got shape ",
                                                   tensor.shape().DebugString()));
  const int value = tensor.scalar<int32_t>()();
  if (value < -kMaxExponent || value > kMaxExponent)
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be in [", -kMaxExponent,
                                                   ", ", kMaxExponent, "]; got ", value));
  *exponent = value;
  return absl::OkStatus();
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_OP_INPUTS_H_
