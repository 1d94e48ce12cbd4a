#!/usr/bin/env bash
# Builds every ops/cuda/tests/*_test.cu with nvcc against the plain CUDA kernels and runs
# it. Each driver compares the GPU results bit for bit with the CPU rule. Needs a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-nvcc}
ARCH=${CUDA_ARCH:-"-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90"}
status=0
for test in cuda/tests/*_test.cu; do
  name=$(basename "$test" .cu)
  kernel="cuda/${name%_test}.cu"
  binary="cuda/tests/$name"
  echo "== $name"
  "$NVCC" -O2 -std=c++17 $ARCH -I . "$test" "$kernel" -o "$binary"
  "./$binary" || status=1
done
exit $status
