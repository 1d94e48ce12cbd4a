// Registration of KerasDluIm2col and KerasDluCol2im: the patch gather behind DLUConv2D's
// integer GEMM and its adjoint (the input gradient's scatter-add), native instead of
// tf.image.extract_patches and its gather/scatter gradient; and of KerasDluConv2dFused,
// DLUConv2D's 8-bit forward that gathers the patches from the image's digits.
#include <algorithm>
#include <string>
#include <vector>

#include "cc/kernels/exponent_bin.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

absl::Status WindowAttrs(InferenceContext* c, std::vector<int>* sizes, std::vector<int>* strides,
                         std::vector<int>* dilations, std::string* padding) {
  TF_RETURN_IF_ERROR(c->GetAttr("kernel_size", sizes));
  TF_RETURN_IF_ERROR(c->GetAttr("strides", strides));
  TF_RETURN_IF_ERROR(c->GetAttr("dilations", dilations));
  TF_RETURN_IF_ERROR(c->GetAttr("padding", padding));
  for (const auto* list : {sizes, strides, dilations})
    if (list->size() != 2 || (*list)[0] < 1 || (*list)[1] < 1)
      return absl::InvalidArgumentError(
          "`kernel_size`, `strides` and `dilations` must be 2 positive integers each");
  return absl::OkStatus();
}

DimensionHandle OutputDim(InferenceContext* c, DimensionHandle in, int size, int stride,
                          int dilation, const std::string& padding) {
  if (!c->ValueKnown(in)) return c->UnknownDim();
  const int64_t n = c->Value(in), effective = (size - 1) * int64_t{dilation} + 1;
  const int64_t out = padding == "SAME" ? (n + stride - 1) / stride
                                        : std::max<int64_t>(0, (n - effective + stride) / stride);
  return c->MakeDim(out);
}

absl::Status Im2colShape(InferenceContext* c) {
  ShapeHandle images;
  absl::Status status = c->WithRank(c->input(0), 4, &images);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        "`images` must be [batch, height, width, channels] (rank 4): ", status.message()));
  std::vector<int> sizes, strides, dilations;
  std::string padding;
  TF_RETURN_IF_ERROR(WindowAttrs(c, &sizes, &strides, &dilations, &padding));
  DimensionHandle depth;
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(images, 3), int64_t{sizes[0]} * sizes[1], &depth));
  c->set_output(0, c->MakeShape({c->Dim(images, 0),
                                 OutputDim(c, c->Dim(images, 1), sizes[0], strides[0],
                                           dilations[0], padding),
                                 OutputDim(c, c->Dim(images, 2), sizes[1], strides[1],
                                           dilations[1], padding),
                                 depth}));
  return absl::OkStatus();
}

// KerasDluConv2dFused: images [N, H, W, C], kernel [kh * kw * C, F], four scalars and
// seeds; product [N * OH * OW, F], the digits and flags of the patches and of the kernel.
absl::Status Conv2dFusedShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(Im2colShape(c));  // output 0: the patches' shape [N, OH, OW, depth]
  ShapeHandle patches = c->output(0), kernel, scalar, seeds;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &kernel));
  for (int index : {2, 3, 5}) TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 0, &scalar));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &seeds));
  DimensionHandle rows, depth, flags_a, flags_b;
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(patches, 0), c->Dim(patches, 1), &rows));
  TF_RETURN_IF_ERROR(c->Multiply(rows, c->Dim(patches, 2), &rows));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(patches, 3), c->Dim(kernel, 0), &depth));
  TF_RETURN_IF_ERROR(c->Add(rows, depth, &flags_a));
  TF_RETURN_IF_ERROR(c->Add(depth, c->Dim(kernel, 1), &flags_b));
  c->set_output(0, c->Matrix(rows, c->Dim(kernel, 1)));
  c->set_output(1, c->Matrix(3, keras_dlu::kHistogramBins));
  c->set_output(2, c->Matrix(rows, depth));
  c->set_output(3, c->Vector(flags_a));
  c->set_output(4, kernel);
  c->set_output(5, c->Vector(flags_b));
  return absl::OkStatus();
}

absl::Status Col2imShape(InferenceContext* c) {
  ShapeHandle patches, image_shape, images;
  absl::Status status = c->WithRank(c->input(0), 4, &patches);
  if (!status.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        "`patches` must be [batch, rows, cols, depth] (rank 4): ", status.message()));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &image_shape));
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &images));
  TF_RETURN_IF_ERROR(c->WithRank(images, 4, &images));
  c->set_output(0, images);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("KerasDluIm2col")
    .Input("images: float")
    .Output("patches: float")
    .Attr("kernel_size: list(int)")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .SetShapeFn(Im2colShape)
    .Doc(R"doc(
The patches of images [N, H, W, C] as tf.image.extract_patches lays them out:
[N, OH, OW, kh * kw * C], ordered (kernel row, kernel column, channel); padded positions
are zeros. Output sizes and SAME padding follow tf.nn.conv2d.
)doc");

REGISTER_OP("KerasDluCol2im")
    .Input("patches: float")
    .Input("image_shape: int32")
    .Output("images: float")
    .Attr("kernel_size: list(int)")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .SetShapeFn(Col2imShape)
    .Doc(R"doc(
The adjoint of KerasDluIm2col: every element of patches [N, OH, OW, kh * kw * C] is added
to the image position it was gathered from (padded positions are dropped); image_shape is
[N, H, W, C].
)doc");

REGISTER_OP("KerasDluConv2dFused")
    .Input("images: float")
    .Input("kernel: float")
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
    .Attr("kernel_size: list(int)")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .Attr("rounding: {'nearest', 'stochastic'} = 'nearest'")
    .Attr("Tsink: {float, double} = DT_FLOAT")
    .Attr("compute_grad_a: bool = true")
    .Attr("product_histograms: bool = true")
    .SetShapeFn(Conv2dFusedShape)
    .Doc(R"doc(
KerasDluMatmulFused of the patches of images (as KerasDluIm2col lays them out,
[N * OH * OW, kh * kw * C]) and kernel [kh * kw * C, F], at 8 bits: the image is quantized
once with a_exponent (stochastic rounding keyed by seeds[0] and the image's element index)
and the patch matrix is gathered from its digits. Outputs as KerasDluMatmulFused's, with
a_digits the patches' digits (q + 128) and stats[0] the patches' histogram (each pixel
counted once per patch element that copies it). Its gradient is KerasDluMatmulFusedGrad
followed by KerasDluCol2im. product_histograms as KerasDluMatmulFused's.
)doc");
