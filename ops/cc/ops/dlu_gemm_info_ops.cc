// Registration of KerasDluGemmInfo: which integer GEMM backend dlu_matmul uses on the CPU.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

REGISTER_OP("KerasDluGemmInfo")
    .Output("backend: string")
    .Output("detail: string")
    .Output("counters: int64")
    .SetIsStateful()  // the counters change between calls: never constant-fold or cache
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Scalar());
      c->set_output(2, c->Vector(3));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The CPU integer GEMM behind KerasDluMatmul: backend ("onednn" or "portable"), detail
(oneDNN's ISA and primitive implementation, or why the portable loop is used) and counters
[primitives created, cached primitive reuses, products written as floats by the primitive].
)doc");
