// Registration of ExponentHistogram: the DLU analysis block as a TensorFlow op.
#include "cc/kernels/exponent_bin.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

REGISTER_OP("KerasDluExponentHistogram")
    .Input("x: T")
    .Output("histogram: int64")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(keras_dlu::kHistogramBins));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Histogram of floor(log2|x|) + 32 over the finite non-zero elements of x, clamped to
[0, 63]. Zeros, infinities and NaNs are not counted. x may have any shape.
)doc");
