// CPU kernel of KerasDluExponentHistogram: one pass, sharded over TensorFlow's intra-op
// thread pool, each shard filling its own 64 counters that are summed at the end.
#include <array>
#include <vector>

#include "exponent_histogram.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

namespace keras_dlu {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

template <typename T>
class ExponentHistogramCpuOp : public OpKernel {
 public:
  explicit ExponentHistogramCpuOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({kHistogramBins}), &output));
    const auto x = input.flat<T>();
    const int64_t n = x.size();
    constexpr int64_t kBlock = 1 << 16;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<std::array<int64_t, kHistogramBins>> partial(blocks);
    auto work = [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        partial[b].fill(0);
        const int64_t end = std::min(n, (b + 1) * kBlock);
        AccumulateExponentHistogram(x.data() + b * kBlock, end - b * kBlock,
                                    partial[b].data());
      }
    };
    auto* pool = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(pool->num_threads, pool->workers, blocks, kBlock * 2, work);
    auto histogram = output->vec<int64_t>();
    histogram.setZero();
    for (const auto& counts : partial)
      for (int i = 0; i < kHistogramBins; ++i) histogram(i) += counts[i];
  }
};

#define REGISTER_CPU(T)                                                     \
  REGISTER_KERNEL_BUILDER(Name("KerasDluExponentHistogram")                 \
                              .Device(::tensorflow::DEVICE_CPU)             \
                              .TypeConstraint<T>("T"),                      \
                          ExponentHistogramCpuOp<T>);
REGISTER_CPU(Eigen::half);
REGISTER_CPU(Eigen::bfloat16);
REGISTER_CPU(float);
REGISTER_CPU(double);
#undef REGISTER_CPU

}  // namespace keras_dlu
