#!/usr/bin/env bash
# Runs the kernels on the CPU through cuda_shim.h (no GPU needed) and compares them with
# transliterations of crates/tensor/src/cpu. -ffp-contract=off: the host must not fuse either.
set -euo pipefail
cd "$(dirname "$0")"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for t in test_gemm test_kernels; do
  g++ -std=c++17 -O1 -ffp-contract=off -pthread -Wall -Wno-unused-function -Wno-unknown-pragmas "$t.cpp" -o "$out/$t"
  "$out/$t"
done
