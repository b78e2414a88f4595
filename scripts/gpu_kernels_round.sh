#!/bin/bash
# One round on the device machine for the CUDA linear kernels: the ops GPU
# tests, the GEMM benchmark, SASS instruction counts of the 4-bit kernels and
# an Nsight Compute profile of the batch-1 GEMV. Binaries are built here and
# staged with their host libraries beside this script (docs/cuda.md):
#   DIR/{ops_cuda_tests,bench_gemm_cuda_bench,lib/,shared/golden/}
# Full logs go to $OUT; a short table is printed last.
set -o pipefail
D=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/gpu_round}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$D/lib:$LD_LIBRARY_PATH LOWBIT_SHARED=$D/shared
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/smi.txt" 2>&1
"$D/ops_cuda_tests" > "$OUT/tests.log" 2>&1
echo "ops_cuda_tests rc $?: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/tests.log" | tr '\n' ' ')"
grep -E "FAILED|Failure|error" "$OUT/tests.log" | head -20
if [ "${SANITIZE:-1}" = 1 ]; then
  # Every 4-bit kernel, forced, under the memory checker.
  timeout 100 compute-sanitizer --tool memcheck "$D/ops_cuda_tests" --gtest_filter='Linear4bitCuda.EveryPath*' \
    > "$OUT/memcheck.log" 2>&1
  echo "memcheck rc $?: $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/memcheck.log" | tr '\n' ' ')"
fi
if [ "${SKIP_SASS:-0}" = 0 ]; then
  cuobjdump -sass "$D/bench_gemm_cuda_bench" > "$OUT/bench.sass" 2>/dev/null
  # Instruction mix of each bf16 4-bit kernel (plain absmax).
  awk '/Function : /{name=$3} /^ +\/\*[0-9a-f]+\*\/ +[A-Z@!]/{sub(/^ *\/\*[0-9a-f]+\*\/ */,""); if ($1 ~ /^@/) op=$2; else op=$1; sub(/\..*/,"",op); cnt[name" "op]++}
       END{for (k in cnt) print cnt[k], k}' "$OUT/bench.sass" | grep -E "bfloat16Li1ELb0|bfloat16Li2ELb0" | sort -k2,2 -k1,1nr > "$OUT/sass_mix.txt"
  gzip -f "$OUT/bench.sass"
fi
if [ "${PROFILE:-0}" = 1 ]; then
  timeout 100 ncu --clock-control none -k regex:"${PROFILE_KERNEL:-gemm_4bit_mma_kernel}" --launch-skip 3 --launch-count 1 \
    --set full --print-details all "$D/bench_gemm_cuda_bench" --profile > "$OUT/ncu.txt" 2>&1
  echo "ncu rc $?"
fi
"$D/bench_gemm_cuda_bench" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
echo "bench rc $?"
cat "$OUT/smi.txt"
grep -E "Duration|DRAM Throughput|Memory Throughput|Issue Slots Busy|Achieved Occupancy|Registers Per|No Eligible|Eligible Warps" "$OUT/ncu.txt" 2>/dev/null | head -12
cat "$OUT/bench.log"
