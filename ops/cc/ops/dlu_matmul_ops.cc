// Registration of KerasDluMatmul: the DLU's dynamic fixed-point matrix product (Fujitsu
// DLU; Courbariaux et al. 2014) as a TensorFlow op. KerasDluQuantize: dlu_quantize_ops.cc.
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

absl::Status MatmulShape(InferenceContext* c) {
  ShapeHandle a, b, seeds;
  absl::Status status = c->WithRank(c->input(0), 2, &a);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat("`a` must be a matrix (rank 2): ",
                                                   status.message()));
  status = c->WithRank(c->input(1), 2, &b);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat("`b` must be a matrix (rank 2): ",
                                                   status.message()));
  TF_RETURN_IF_ERROR(ScalarInput(c, 2, "a_exponent"));
  TF_RETURN_IF_ERROR(ScalarInput(c, 3, "b_exponent"));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &seeds));
  TF_RETURN_IF_ERROR(ScalarInput(c, 5, "grad_exponent"));
  bool transpose_a, transpose_b;
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_a", &transpose_a));
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_b", &transpose_b));
  DimensionHandle m = c->Dim(a, transpose_a ? 1 : 0);
  DimensionHandle ka = c->Dim(a, transpose_a ? 0 : 1);
  DimensionHandle kb = c->Dim(b, transpose_b ? 1 : 0);
  DimensionHandle n = c->Dim(b, transpose_b ? 0 : 1);
  DimensionHandle merged;
  status = c->Merge(ka, kb, &merged);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        "inner dimensions of `a` and `b` do not match: ", status.message()));
  c->set_output(0, c->Matrix(m, n));
  c->set_output(1, c->Matrix(3, keras_dlu::kHistogramBins));
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
