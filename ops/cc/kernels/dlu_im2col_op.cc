// CPU kernels of KerasDluIm2col and KerasDluCol2im (registrations: dlu_im2col_ops.cc).
// Im2col copies one output row (a kernel-width run of C channels at a time) per (image,
// output row), sharded over TensorFlow's intra-op pool; Col2im shards over images, so
// each thread adds into its own image and the sums never depend on threading.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "dlu_window.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

namespace keras_dlu {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

class Im2colCpuOp : public OpKernel {
 public:
  explicit Im2colCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, window_.Read(context));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& images = context->input(0);
    OP_REQUIRES_OK(context, Window::CheckImages(images));
    const int64_t batch = images.dim_size(0), channels = images.dim_size(3);
    const Axis rows = window_.Rows(images.dim_size(1)), cols = window_.Cols(images.dim_size(2));
    const int64_t depth = rows.size * cols.size * channels;
    Tensor* patches = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({batch, rows.out, cols.out, depth}), &patches));
    const float* in = images.flat<float>().data();
    float* out = patches->flat<float>().data();
    const int64_t row_elements = cols.out * depth;
    auto work = [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const int64_t n = r / rows.out, oh = r % rows.out;
        std::memset(out + r * row_elements, 0, sizeof(float) * row_elements);
        ForEachRun(n, oh, rows, cols, channels, [&](int64_t p, int64_t x, int64_t count) {
          std::copy(in + x, in + x + count, out + p);
        });
      }
    };
    auto* pool = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(pool->num_threads, pool->workers, batch * rows.out, 2 * row_elements,
                        work);
  }

 private:
  Window window_;
};

class Col2imCpuOp : public OpKernel {
 public:
  explicit Col2imCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, window_.Read(context));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& patches = context->input(0);
    const Tensor& shape = context->input(1);
    OP_REQUIRES(context, shape.dims() == 1 && shape.dim_size(0) == 4,
                absl::InvalidArgumentError(absl::StrCat(
                    "`image_shape` must be an int32 vector of 4; got shape ",
                    shape.shape().DebugString())));
    const auto dims = shape.vec<int32_t>();
    OP_REQUIRES(context, dims(0) >= 0 && dims(1) >= 0 && dims(2) >= 0 && dims(3) >= 0,
                absl::InvalidArgumentError("`image_shape` must not be negative"));
    const int64_t batch = dims(0), channels = dims(3);
    const Axis rows = window_.Rows(dims(1)), cols = window_.Cols(dims(2));
    const TensorShape expected({batch, rows.out, cols.out, rows.size * cols.size * channels});
    OP_REQUIRES(context, patches.shape() == expected,
                absl::InvalidArgumentError(absl::StrCat(
                    "`patches` must have shape ", expected.DebugString(), " for image_shape [",
                    batch, ", ", dims(1), ", ", dims(2), ", ", channels, "]; got ",
                    patches.shape().DebugString())));
    Tensor* images = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({batch, dims(1), dims(2), channels}), &images));
    const float* in = patches.flat<float>().data();
    float* out = images->flat<float>().data();
    const int64_t image_elements = int64_t{dims(1)} * dims(2) * channels;
    auto work = [&](int64_t first, int64_t last) {
      std::memset(out + first * image_elements, 0,
                  sizeof(float) * (last - first) * image_elements);
      for (int64_t n = first; n < last; ++n)
        for (int64_t oh = 0; oh < rows.out; ++oh)
          ForEachRun(n, oh, rows, cols, channels, [&](int64_t p, int64_t x, int64_t count) {
            for (int64_t c = 0; c < count; ++c) out[x + c] += in[p + c];
          });
    };
    auto* pool = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(pool->num_threads, pool->workers, batch,
                        2 * rows.out * cols.out * rows.size * cols.size * channels + 1, work);
  }

 private:
  Window window_;
};

REGISTER_KERNEL_BUILDER(Name("KerasDluIm2col").Device(::tensorflow::DEVICE_CPU), Im2colCpuOp);
REGISTER_KERNEL_BUILDER(Name("KerasDluCol2im").Device(::tensorflow::DEVICE_CPU)
                            .HostMemory("image_shape"),
                        Col2imCpuOp);

}  // namespace
}  // namespace keras_dlu
