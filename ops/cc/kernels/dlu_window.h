// The convolution window of the im2col ops (KerasDluIm2col, KerasDluCol2im) and of the
// fused 8-bit convolution (KerasDluConv2dFused): output sizes, padding and the runs of
// consecutive elements a patch row shares with the image.
#ifndef KERAS_DLU_OPS_DLU_WINDOW_H_
#define KERAS_DLU_OPS_DLU_WINDOW_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {

using ::tensorflow::OpKernelConstruction;

// One spatial axis: output size and the padding before the first input element.
struct Axis {
  int64_t in = 0, out = 0, size = 1, stride = 1, dilation = 1, before = 0;
};

inline Axis MakeAxis(int64_t in, int size, int stride, int dilation, bool same) {
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
  // The error of an `images` input that is not [batch, height, width, channels].
  static absl::Status CheckImages(const ::tensorflow::Tensor& images) {
    if (images.dims() == 4) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "`images` must be [batch, height, width, channels] (rank 4); got shape ",
        images.shape().DebugString()));
  }
  Axis Rows(int64_t height) const {
    return MakeAxis(height, sizes[0], strides[0], dilations[0], same);
  }
  Axis Cols(int64_t width) const {
    return MakeAxis(width, sizes[1], strides[1], dilations[1], same);
  }
};

// Calls visit(patch_offset, image_offset, count) for every run of `count` consecutive
// elements that patch row (n, oh) shares with the image; positions in the padding are
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

}  // namespace keras_dlu

#endif  // KERAS_DLU_OPS_DLU_WINDOW_H_
