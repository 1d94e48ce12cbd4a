// CPU kernel of KerasDluConv2dFused (registration: dlu_im2col_ops.cc): the 8-bit DLU
// convolution as an integer GEMM whose patches are gathered from the image's digits. The
// image is quantized once (not its kh*kw-times larger patch matrix), the patch matrix is
// built from bytes (a quarter of float32's traffic), and its digits go to the GEMM and to
// the backward (KerasDluMatmulFusedGrad) as KerasDluMatmulFused's would.
//
// Same results as KerasDluIm2col + KerasDluMatmulFused with nearest rounding, bit for bit:
// the histogram of the patches is the image's, each pixel weighted by the number of patch
// elements that copy it; padded positions are zeros (digit 128, no bin); a patch row or
// column holding a non-finite pixel is flagged. Stochastic rounding keys on the image's
// element index, so every copy of a pixel rounds alike.
#include <omp.h>

#include <cstring>
#include <vector>

#include "dlu_matmul_cpu.h"
#include "dlu_op_inputs.h"
#include "dlu_histogram.h"
#include "dlu_rows.h"
#include "dlu_window.h"
#include "exponent_bin.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace keras_dlu {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

constexpr int64_t kBlock = 4096;  // elements per block of the image passes

// How many (output, kernel) positions of `axis` read each input index.
std::vector<int64_t> Cover(const Axis& axis) {
  std::vector<int64_t> cover(axis.in, 0);
  for (int64_t o = 0; o < axis.out; ++o)
    for (int64_t i = 0; i < axis.size; ++i) {
      const int64_t at = o * axis.stride - axis.before + i * axis.dilation;
      if (at >= 0 && at < axis.in) ++cover[at];
    }
  return cover;
}

// The image's digits q + 128 and the patches' histogram (see the file comment); returns
// whether some pixel is not finite.
bool QuantizeImage(const float* x, int64_t batch, const Axis& rows, const Axis& cols,
                   int64_t channels, int exponent, bool stochastic, uint64_t seed,
                   uint8_t* digits, int64_t* histogram) {
  const int64_t count = batch * rows.in * cols.in * channels;
  const std::vector<int64_t> cover_rows = Cover(rows), cover_cols = Cover(cols);
  const bool direct = FloatQuantizationIsExact(stochastic, exponent);
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  std::memset(histogram, 0, sizeof(int64_t) * kHistogramBins);
  bool any_bad = false;
#pragma omp parallel if (count > (1 << 16))
  {
    std::vector<int64_t> local(kHistogramBins + 1, 0);
    std::vector<int32_t> q(direct ? 0 : kBlock);
    bool bad = false;
#pragma omp for schedule(static)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t e0 = block * kBlock, n = std::min(kBlock, count - e0);
      int8_t* out = reinterpret_cast<int8_t*>(digits + e0);
      if (direct) {
        QuantizeRowNearestInt8(x + e0, n, exponent, 128, out);
      } else {
        QuantizeRow(x + e0, n, exponent, 8, stochastic, seed, e0, q.data());
        for (int64_t e = 0; e < n; ++e)
          out[e] = static_cast<int8_t>(static_cast<uint8_t>(q[e] + 128));
      }
      // the element's channel, column and row, stepped along (one division per block:
      // three per element cost about 2 ms of LeNet's first convolution)
      int64_t c = e0 % channels, w = (e0 / channels) % cols.in;
      int64_t h = (e0 / channels / cols.in) % rows.in;
      for (int64_t e = e0; e < e0 + n; ++e) {
        uint32_t bits;
        std::memcpy(&bits, x + e, sizeof(bits));
        bad |= ((bits >> 23) & 0xffu) == 0xffu;
        local[BinOrDiscard(bits)] += cover_rows[h] * cover_cols[w];
        if (++c < channels) continue;
        c = 0;
        if (++w < cols.in) continue;
        w = 0;
        if (++h == rows.in) h = 0;
      }
    }
#pragma omp critical
    {
      for (int b = 0; b < kHistogramBins; ++b) histogram[b] += local[b];
      any_bad |= bad;
    }
  }
  return any_bad;
}

// The patch matrix [batch * OH * OW, kh * kw * C] of the digits (128 in the padding).
void GatherPatches(const uint8_t* digits, int64_t batch, const Axis& rows, const Axis& cols,
                   int64_t channels, uint8_t* patches) {
  const int64_t row_bytes = cols.out * rows.size * cols.size * channels;
#pragma omp parallel for schedule(static) if (batch * rows.out * row_bytes > (1 << 16))
  for (int64_t r = 0; r < batch * rows.out; ++r) {
    std::memset(patches + r * row_bytes, 128, row_bytes);
    ForEachRun(r / rows.out, r % rows.out, rows, cols, channels,
               [&](int64_t p, int64_t x, int64_t count) {
                 std::memcpy(patches + p, digits + x, count);
               });
  }
}

// flags [rows + depth] of the patch matrix: a patch row, or column, copies a bad pixel.
void FlagPatches(const float* x, int64_t batch, const Axis& rows, const Axis& cols,
                 int64_t channels, uint8_t* flags) {
  const int64_t depth = rows.size * cols.size * channels;
  uint8_t* col_flags = flags + batch * rows.out * cols.out;
  for (int64_t r = 0; r < batch * rows.out; ++r)
    ForEachRun(r / rows.out, r % rows.out, rows, cols, channels,
               [&](int64_t p, int64_t at, int64_t count) {
                 for (int64_t c = 0; c < count; ++c) {
                   if (IsFiniteValue(x[at + c])) continue;
                   flags[(p + c) / depth] = 1;
                   col_flags[(p + c) % depth] = 1;
                 }
               });
}

class DluConv2dFusedCpuOp : public OpKernel {
 public:
  explicit DluConv2dFusedCpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, window_.Read(context));
    OP_REQUIRES_OK(context, ReadRounding(context, &stochastic_));
    OP_REQUIRES_OK(context, context->GetAttr("product_histograms", &product_histogram_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& images = context->input(0);
    const Tensor& kernel = context->input(1);
    OP_REQUIRES_OK(context, Window::CheckImages(images));
    const int64_t batch = images.dim_size(0), channels = images.dim_size(3);
    const Axis rows = window_.Rows(images.dim_size(1)), cols = window_.Cols(images.dim_size(2));
    const int64_t depth = rows.size * cols.size * channels;
    OP_REQUIRES(context, kernel.dims() == 2 && kernel.dim_size(0) == depth,
                absl::InvalidArgumentError(absl::StrCat(
                    "`kernel` must be [kh * kw * channels = ", depth, ", filters]; got shape ",
                    kernel.shape().DebugString())));
    DluMatmulArgs args;
    args.m = batch * rows.out * cols.out;
    args.k = depth;
    args.n = kernel.dim_size(1);
    args.transpose_a = args.transpose_b = false;
    args.bits = 8;
    args.stochastic = stochastic_;
    OP_REQUIRES_OK(context, ReadExponent(context->input(2), "a_exponent", &args.a_exponent));
    OP_REQUIRES_OK(context, ReadExponent(context->input(3), "b_exponent", &args.b_exponent));
    const Tensor& seeds = context->input(4);
    OP_REQUIRES(context, seeds.dims() == 1 && seeds.dim_size(0) == 2,
                absl::InvalidArgumentError(absl::StrCat(
                    "`seeds` must be an int64 vector of 2; got shape ",
                    seeds.shape().DebugString())));
    args.seed_a = static_cast<uint64_t>(seeds.vec<int64_t>()(0));
    args.seed_b = static_cast<uint64_t>(seeds.vec<int64_t>()(1));
    Tensor *product, *stats, *a_digits, *a_flags, *b_digits, *b_flags;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({args.m, args.n}), &product));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({3, kHistogramBins}), &stats));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({args.m, depth}), &a_digits));
    OP_REQUIRES_OK(context, context->allocate_output(3, TensorShape({args.m + depth}), &a_flags));
    OP_REQUIRES_OK(context, context->allocate_output(4, kernel.shape(), &b_digits));
    OP_REQUIRES_OK(context, context->allocate_output(5, TensorShape({depth + args.n}), &b_flags));
    const float* x = images.flat<float>().data();
    Tensor image_digits;
    OP_REQUIRES_OK(context, context->allocate_temp(::tensorflow::DT_UINT8, images.shape(),
                                                   &image_digits));
    int64_t histogram[kHistogramBins];
    const bool bad = QuantizeImage(x, batch, rows, cols, channels, args.a_exponent, stochastic_,
                                   args.seed_a, image_digits.flat<uint8_t>().data(), histogram);
    uint8_t* patches = a_digits->flat<uint8_t>().data();
    GatherPatches(image_digits.flat<uint8_t>().data(), batch, rows, cols, channels, patches);
    uint8_t* flags = a_flags->flat<uint8_t>().data();
    std::memset(flags, 0, args.m + depth);
    if (bad) FlagPatches(x, batch, rows, cols, channels, flags);
    args.a = nullptr;
    args.a_given = patches;
    args.a_given_flags = flags;
    args.a_given_histogram = histogram;
    args.b = kernel.flat<float>().data();
    args.product = product->flat<float>().data();
    args.stats = stats->flat<int64_t>().data();
    args.b_digits = b_digits->flat<int8_t>().data();
    args.b_flags = b_flags->flat<uint8_t>().data();
    args.product_histogram = product_histogram_;
    DluMatmulCpu(args);
  }

 private:
  Window window_;
  bool stochastic_ = false;
  bool product_histogram_ = true;
};

REGISTER_KERNEL_BUILDER(Name("KerasDluConv2dFused").Device(::tensorflow::DEVICE_CPU),
                        DluConv2dFusedCpuOp);

}  // namespace
}  // namespace keras_dlu
