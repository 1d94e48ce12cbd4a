// Registration of KerasDluMatmul: the DLU's dynamic fixed-point matrix product (Fujitsu
// DLU; Courbariaux et al. 2014) as a TensorFlow op, and of its fused 8-bit form whose
// backward reads the forward's digits (KerasDluMatmulFused, KerasDluMatmulFusedGrad).
// KerasDluQuantize: dlu_quantize_ops.cc.
#include "cc/kernels/exponent_bin.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

absl::Status ScalarInput(InferenceContext* c, int index, const char* name) {
  ShapeHandle shape;
  absl::Status status = c->WithRank(c->input(index), 0, &shape);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be a scalar: ",
                                                   status.message()));
  return absl::OkStatus();
}

absl::Status Matrix(InferenceContext* c, int index, const char* name, ShapeHandle* shape) {
  absl::Status status = c->WithRank(c->input(index), 2, shape);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat("`", name, "` must be a matrix (rank 2): ",
                                                   status.message()));
  return absl::OkStatus();
}

absl::Status Merged(InferenceContext* c, DimensionHandle x, DimensionHandle y,
                    const char* what) {
  DimensionHandle merged;
  absl::Status status = c->Merge(x, y, &merged);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat(what, " do not match: ", status.message()));
  return absl::OkStatus();
}

// Inputs a, b, a_exponent, b_exponent, seeds, grad_exponent of KerasDluMatmul(Fused):
// sets *m, *k, *n.
absl::Status MatmulInputs(InferenceContext* c, bool transpose_a, bool transpose_b,
                          DimensionHandle* m, DimensionHandle* k, DimensionHandle* n) {
  ShapeHandle a, b, seeds;
  TF_RETURN_IF_ERROR(Matrix(c, 0, "a", &a));
  TF_RETURN_IF_ERROR(Matrix(c, 1, "b", &b));
  TF_RETURN_IF_ERROR(ScalarInput(c, 2, "a_exponent"));
  TF_RETURN_IF_ERROR(ScalarInput(c, 3, "b_exponent"));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &seeds));
  TF_RETURN_IF_ERROR(ScalarInput(c, 5, "grad_exponent"));
  *m = c->Dim(a, transpose_a ? 1 : 0);
  *k = c->Dim(a, transpose_a ? 0 : 1);
  *n = c->Dim(b, transpose_b ? 0 : 1);
  return Merged(c, *k, c->Dim(b, transpose_b ? 1 : 0), "inner dimensions of `a` and `b`");
}

absl::Status MatmulShape(InferenceContext* c) {
  bool transpose_a, transpose_b;
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_a", &transpose_a));
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_b", &transpose_b));
  DimensionHandle m, k, n;
  TF_RETURN_IF_ERROR(MatmulInputs(c, transpose_a, transpose_b, &m, &k, &n));
  c->set_output(0, c->Matrix(m, n));
  c->set_output(1, c->Matrix(3, keras_dlu::kHistogramBins));
  return absl::OkStatus();
}

// [rows + cols] non-finite flags of a kept [rows, cols] operand.
ShapeHandle FlagsShape(InferenceContext* c, ShapeHandle digits) {
  DimensionHandle length;
  if (!c->Add(c->Dim(digits, 0), c->Dim(digits, 1), &length).ok())
    length = c->UnknownDim();
  return c->Vector(length);
}

absl::Status FusedShape(InferenceContext* c) {
  DimensionHandle m, k, n;
  TF_RETURN_IF_ERROR(MatmulInputs(c, false, false, &m, &k, &n));
  c->set_output(0, c->Matrix(m, n));
  c->set_output(1, c->Matrix(3, keras_dlu::kHistogramBins));
  c->set_output(2, c->input(0));
  c->set_output(3, FlagsShape(c, c->input(0)));
  c->set_output(4, c->input(1));
  c->set_output(5, FlagsShape(c, c->input(1)));
  return absl::OkStatus();
}

absl::Status FusedGradShape(InferenceContext* c) {
  ShapeHandle grad, a, b, flags;
  TF_RETURN_IF_ERROR(Matrix(c, 0, "grad", &grad));
  TF_RETURN_IF_ERROR(Matrix(c, 1, "a_digits", &a));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &flags));
  TF_RETURN_IF_ERROR(Matrix(c, 3, "b_digits", &b));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &flags));
  TF_RETURN_IF_ERROR(ScalarInput(c, 5, "a_exponent"));
  TF_RETURN_IF_ERROR(ScalarInput(c, 6, "b_exponent"));
  TF_RETURN_IF_ERROR(ScalarInput(c, 7, "grad_exponent"));
  TF_RETURN_IF_ERROR(ScalarInput(c, 8, "seed"));
  TF_RETURN_IF_ERROR(Merged(c, c->Dim(grad, 0), c->Dim(a, 0), "rows of `grad` and `a_digits`"));
  TF_RETURN_IF_ERROR(Merged(c, c->Dim(a, 1), c->Dim(b, 0), "`a_digits` and `b_digits`"));
  TF_RETURN_IF_ERROR(Merged(c, c->Dim(grad, 1), c->Dim(b, 1),
                            "columns of `grad` and `b_digits`"));
  bool grad_a;
  TF_RETURN_IF_ERROR(c->GetAttr("compute_grad_a", &grad_a));
  c->set_output(0, grad_a ? a : c->Matrix(0, c->Dim(a, 1)));
  c->set_output(1, b);
  c->set_output(2, c->Matrix(3, keras_dlu::kHistogramBins));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("KerasDluMatmul")
    .Input("a: float")
    .Input("b: float")
    .Input("a_exponent: int32")
    .Input("b_exponent: int32")
    .Input("seeds: int64")
    .Input("grad_exponent: int32")
    .Input("grad_stats_sink: Tsink")
    .Output("product: float")
    .Output("stats: int64")
    .Attr("bits: int = 8")
    .Attr("rounding: {'nearest', 'stochastic'} = 'nearest'")
    .Attr("transpose_a: bool = false")
    .Attr("transpose_b: bool = false")
    .Attr("Tsink: {float, double} = DT_FLOAT")
    .SetShapeFn(MatmulShape)
    .Doc(R"doc(
Dynamic fixed-point matrix product: op(a) [M, K] and op(b) [K, N] are quantized to
`bits`-bit integers with the exponents a_exponent and b_exponent (rounding half to even or
stochastically, keyed by seeds[0] for a and seeds[1] for b), multiplied exactly in wide
integers and scaled by 2**(a_exponent + b_exponent) into float32. A product element whose
row of op(a) or column of op(b) holds a NaN or an infinity is NaN. stats [3, 64] holds the
exponent histograms of a, b and the product. grad_exponent and grad_stats_sink are not read
by the kernel: the registered gradient reads them (see keras_dlu/ops/dlu_matmul.py).
)doc");

REGISTER_OP("KerasDluMatmulFused")
    .Input("a: float")
    .Input("b: float")
    .Input("a_exponent: int32")
    .Input("b_exponent: int32")
    .Input("seeds: int64")
    .Input("grad_exponent: int32")
    .Input("grad_stats_sink: Tsink")
    .Output("product: float")
    .Output("stats: int64")
    .Output("a_digits: uint8")
    .Output("a_flags: uint8")
    .Output("b_digits: int8")
    .Output("b_flags: uint8")
    .Attr("rounding: {'nearest', 'stochastic'} = 'nearest'")
    .Attr("Tsink: {float, double} = DT_FLOAT")
    .Attr("compute_grad_a: bool = true")
    .Attr("product_histograms: bool = true")
    .SetShapeFn(FusedShape)
    .Doc(R"doc(
KerasDluMatmul at 8 bits without transposes (a [M, K], b [K, N]) that also returns the
operands' digits for its gradient, KerasDluMatmulFusedGrad: a_digits = q(a) + 128 (uint8),
b_digits = q(b) (int8), and per operand [rows + cols] flags (1: the row, then the column,
holds a NaN or an infinity). compute_grad_a is not read by the kernel: false tells the
gradient that `a` needs none (its backward then computes only the gradient of `b`).
product_histograms = false leaves the product's histogram (stats[2]) uncounted, zeros:
the DLU layers read only the operands' histograms, and counting the product's reads it back.
)doc");

REGISTER_OP("KerasDluMatmulFusedGrad")
    .Input("grad: float")
    .Input("a_digits: uint8")
    .Input("a_flags: uint8")
    .Input("b_digits: int8")
    .Input("b_flags: uint8")
    .Input("a_exponent: int32")
    .Input("b_exponent: int32")
    .Input("grad_exponent: int32")
    .Input("seed: int64")
    .Output("grad_a: float")
    .Output("grad_b: float")
    .Output("stats: int64")
    .Attr("rounding: {'nearest', 'stochastic'} = 'nearest'")
    .Attr("compute_grad_a: bool = true")
    .Attr("product_histograms: bool = true")
    .SetShapeFn(FusedGradShape)
    .Doc(R"doc(
Both backward products of KerasDluMatmulFused from its kept digits: grad [M, N] is
quantized once with grad_exponent (stochastic rounding keyed by seed), then
grad_a = 2**(grad_exponent + b_exponent) Q(grad) Q(b)^T [M, K] and
grad_b = 2**(a_exponent + grad_exponent) Q(a)^T Q(grad) [K, N], NaN where a row or column
of the operands holds a non-finite value. stats [3, 64]: the exponent histograms of grad,
grad_a and grad_b. With compute_grad_a = false, grad_a is not computed ([0, K]; its
histogram row is zeros): the input of the forward needs no gradient. With
product_histograms = false the histograms of grad_a and grad_b are zeros (not counted).
)doc");
