// Shared input checks of the DLU op kernels (CPU and GPU): attribute parsing, shapes,
// exponent ranges and seeds, each error naming the argument and the allowed values, so
// every device rejects bad input with the same message.
#ifndef KERAS_DLU_OPS_DLU_OP_INPUTS_H_
#define KERAS_DLU_OPS_DLU_OP_INPUTS_H_

#include <string>

#include "dlu_quantize.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

// The allowed rounding names are the ops' attribute constraint (REGISTER_OP), checked by
// TensorFlow before a kernel is built.
inline absl::Status ReadRounding(::tensorflow::OpKernelConstruction* context,
                                 bool* stochastic) {
  std::string rounding;
  TF_RETURN_IF_ERROR(context->GetAttr("rounding", &rounding));
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

// Attributes of KerasDluMatmul, read once when a CPU or GPU kernel is built.
struct DluMatmulAttrs {
  int bits;
  bool stochastic, transpose_a, transpose_b;
};

inline absl::Status ReadMatmulAttrs(::tensorflow::OpKernelConstruction* context,
                                    DluMatmulAttrs* attrs) {
  TF_RETURN_IF_ERROR(context->GetAttr("bits", &attrs->bits));
  if (attrs->bits != 8 && attrs->bits != 16)
    return absl::InvalidArgumentError(
        absl::StrCat("`bits` must be 8 or 16; got ", attrs->bits));
  TF_RETURN_IF_ERROR(ReadRounding(context, &attrs->stochastic));
  TF_RETURN_IF_ERROR(context->GetAttr("transpose_a", &attrs->transpose_a));
  return context->GetAttr("transpose_b", &attrs->transpose_b);
}

// Checks KerasDluMatmul's inputs (ranks, inner dimensions, exponents, seeds) and fills
// the problem description; `Problem` is the CPU kernel's DluMatmulArgs or the CUDA
// kernel's DluMatmulProblem, which name these fields alike.
template <typename Problem>
absl::Status ReadMatmulProblem(::tensorflow::OpKernelContext* context,
                               const DluMatmulAttrs& attrs, Problem* problem) {
  const ::tensorflow::Tensor& a = context->input(0);
  const ::tensorflow::Tensor& b = context->input(1);
  if (a.dims() != 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "`a` must be a matrix (rank 2); got shape ", a.shape().DebugString()));
  if (b.dims() != 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "`b` must be a matrix (rank 2); got shape ", b.shape().DebugString()));
  problem->m = a.dim_size(attrs.transpose_a ? 1 : 0);
  problem->k = a.dim_size(attrs.transpose_a ? 0 : 1);
  problem->n = b.dim_size(attrs.transpose_b ? 0 : 1);
  if (problem->k != b.dim_size(attrs.transpose_b ? 1 : 0))
    return absl::InvalidArgumentError(absl::StrCat(
        "inner dimensions of `a` and `b` do not match: ", a.shape().DebugString(), " and ",
        b.shape().DebugString()));
  TF_RETURN_IF_ERROR(ReadExponent(context->input(2), "a_exponent", &problem->a_exponent));
  TF_RETURN_IF_ERROR(ReadExponent(context->input(3), "b_exponent", &problem->b_exponent));
  const ::tensorflow::Tensor& seeds = context->input(4);
  if (seeds.dims() != 1 || seeds.dim_size(0) != 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "`seeds` must be an int64 vector of 2; got shape ", seeds.shape().DebugString()));
  problem->seed_a = static_cast<uint64_t>(seeds.vec<int64_t>()(0));
  problem->seed_b = static_cast<uint64_t>(seeds.vec<int64_t>()(1));
  problem->transpose_a = attrs.transpose_a;
  problem->transpose_b = attrs.transpose_b;
  problem->bits = attrs.bits;
  problem->stochastic = attrs.stochastic;
  return absl::OkStatus();
}

// Attributes of KerasDluQuantize.
inline absl::Status ReadQuantizeAttrs(::tensorflow::OpKernelConstruction* context, int* bits,
                                      bool* stochastic) {
  TF_RETURN_IF_ERROR(context->GetAttr("bits", bits));
  if (*bits < 2 || *bits > 16)
    return absl::InvalidArgumentError(absl::StrCat("`bits` must be in [2, 16]; got ", *bits));
  return ReadRounding(context, stochastic);
}

// KerasDluQuantize's exponent and seed inputs.
inline absl::Status ReadQuantizeInputs(::tensorflow::OpKernelContext* context, int* exponent,
                                       uint64_t* seed) {
  TF_RETURN_IF_ERROR(ReadExponent(context->input(1), "exponent", exponent));
  const ::tensorflow::Tensor& seed_tensor = context->input(2);
  if (!::tensorflow::TensorShapeUtils::IsScalar(seed_tensor.shape()))
    return absl::InvalidArgumentError("`seed` must be an int64 scalar");
  *seed = static_cast<uint64_t>(seed_tensor.scalar<int64_t>()());
  return absl::OkStatus();
}

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_OP_INPUTS_H_
