// Registration of KerasDluQuantize: dynamic fixed-point fake quantization (Fujitsu DLU;
// Courbariaux et al. 2014) as a TensorFlow op.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

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

}  // namespace

REGISTER_OP("KerasDluQuantize")
    .Input("x: T")
    .Input("exponent: int32")
    .Input("seed: int64")
    .Output("y: T")
    .Attr("bits: int >= 2")
    .Attr("rounding: {'nearest', 'stochastic'} = 'nearest'")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(ScalarInput(c, 1, "exponent"));
      TF_RETURN_IF_ERROR(ScalarInput(c, 2, "seed"));
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Fake quantization: y = clip(round(x * 2**-exponent), -2**(bits-1), 2**(bits-1)-1) *
2**exponent, rounding half to even or stochastically keyed by (seed, element index).
NaN and infinities pass through unchanged.
)doc");
