// CPU kernels of KerasDluIm2col and KerasDluCol2im (registrations: dlu_im2col_ops.cc).
// Im2col copies one output row (a kernel-width run of C channels at a time) per (image,
// output row), sharded over TensorFlow's intra-op pool; Col2im shards over images, so
// each thread adds into its own image and the sums never depend on threading.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

namespace keras_dlu {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// One spatial axis: output size and the padding before the first input element.
struct Axis {
  int64_t in = 0, out = 0, size = 1, stride = 1, dilation = 1, before = 0;
};

Axis MakeAxis(int64_t in, int size, int stride, int dilation, bool same) {
  Axis axis{in, 0, size, stride, dilation, 0};
  const int64_t effective = (size - 1) * int64_t{dilation} + 1;
  if (same) {
    axis.out = (in + stride - 1) / stride;
    axis.before = std::max<int64_t>(0, (axis.out - 1) * stride + effective - in) / 2;
  } else {
    axis.out = std::max<int64_t>(0, (in - effective + stride) / stride);
  }
  return axis;
}

// The window attributes of both ops; the shape function has checked them already.
struct Window {
  std::vector<int> sizes, strides, dilations;
  bool same = false;

  absl::Status Read(OpKernelConstruction* context) {
    std::string padding;
    TF_RETURN_IF_ERROR(context->GetAttr("kernel_size", &sizes));
    TF_RETURN_IF_ERROR(context->GetAttr("strides", &strides));
    TF_RETURN_IF_ERROR(context->GetAttr("dilations", &dilations));
    TF_RETURN_IF_ERROR(context->GetAttr("padding", &padding));
    for (const auto* list : {&sizes, &strides, &dilations})
      if (list->size() != 2 || (*list)[0] < 1 || (*list)[1] < 1)
        return absl::InvalidArgumentError(
            "`kernel_size`, `strides` and `dilations` must be 2 positive integers each");
    same = padding == "SAME";
    return absl::OkStatus();
  }
  Axis Rows(int64_t height) const {
    return MakeAxis(height, sizes[0], strides[0], dilations[0], same);
  }
  Axis Cols(int64_t width) const {
    return MakeAxis(width, sizes[1], strides[1], dilations[1], same);
  }
};

// Calls visit(patch_offset, image_offset, count) for every run of `count` consecutive
// floats that patch row (n, oh) shares with the image; positions in the padding are
// skipped (Im2col leaves them zero, Col2im drops them).
template <typename Visit>
void ForEachRun(int64_t n, int64_t oh, const Axis& rows, const Axis& cols, int64_t channels,
                Visit visit) {
  const int64_t depth = rows.size * cols.size * channels;
  for (int64_t ow = 0; ow < cols.out; ++ow) {
    const int64_t patch = ((n * rows.out + oh) * cols.out + ow) * depth;
    for (int64_t i = 0; i < rows.size; ++i) {
      const int64_t h = oh * rows.stride - rows.before + i * rows.dilation;
      if (h < 0 || h >= rows.in) continue;
      const int64_t image_row = (n * rows.in + h) * cols.in;
      const int64_t w0 = ow * cols.stride - cols.before;
      // Kernel columns [j0, j1) fall inside the image.
      const int64_t j0 = w0 >= 0 ? 0 : (-w0 + cols.dilation - 1) / cols.dilation;
      const int64_t j1 = std::min<int64_t>(
          cols.size, w0 >= cols.in ? 0 : (cols.in - 1 - w0) / cols.dilation + 1);
      if (j0 >= j1) continue;
      const int64_t at = patch + i * cols.size * channels;
      if (cols.dilation == 1) {  // one run: the window row is contiguous in the image
        visit(at + j0 * channels, (image_row + w0 + j0) * channels, (j1 - j0) * channels);
        continue;
      }
      for (int64_t j = j0; j < j1; ++j)
        visit(at + j * channels, (image_row + w0 + j * cols.dilation) * channels, channels);
    }
  }
}

class Im2colCpuOp : public OpKernel {
 public:
  explicit Im2colCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, window_.Read(context));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& images = context->input(0);
    OP_REQUIRES(context, images.dims() == 4,
                absl::InvalidArgumentError(absl::StrCat(
                    "`images` must be [batch, height, width, channels] (rank 4); got shape ",
                    images.shape().DebugString())));
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
