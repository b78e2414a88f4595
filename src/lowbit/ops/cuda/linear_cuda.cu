// Dense linear through cuBLAS, the dequantize-then-cuBLAS path of the 4-bit
// linear (prompt-sized batches, odd shapes), and the Tensor-level bodies of
// ops::linear / ops::linear_4bit for CUDA tensors.
//
// dequantize_4bit_weight: reads n*k/2 bytes of codes plus the absmax, writes
// n*k values of the output dtype (its kernel's comment has the access pattern).
#include <cublas_v2.h>

#include <string>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/cuda/linear_cuda.h"

namespace lowbit::ops::cuda {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw_error(std::string(what) + " failed: " + cublasGetStatusString(status));
}

cublasHandle_t cublas_handle() {
  constexpr int kMaxDevices = 16;
  thread_local cublasHandle_t handles[kMaxDevices] = {};
  int device = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= kMaxDevices) throw_error("cuBLAS: device index " + std::to_string(device) + " is out of range");
  if (!handles[device]) check_cublas(cublasCreate(&handles[device]), "cublasCreate");
  return handles[device];
}

namespace {

__device__ __forceinline__ float decode_absmax(const Packed4bit& w, int64_t block) {
  if (!w.qabsmax) return w.absmax[block];
  const int64_t outer = block / w.nested_blocksize;
  return __fadd_rn(__fmul_rn(w.nested_code[w.qabsmax[block]], w.nested_absmax[outer]),
                   fused4::nested_offset_at(w, uint32_t(outer)));
}

// Two weights' values from one packed byte, rounded as bitsandbytes does
// (the weight dtype, then the output dtype).
template <typename W, typename Out>
__device__ __forceinline__ void decode_byte(const float* code, uint32_t byte, float absmax, Out* vals) {
  vals[0] = from_float<Out>(to_float(from_float<W>(__fmul_rn(code[byte >> 4 & 15u], absmax))));
  vals[1] = from_float<Out>(to_float(from_float<W>(__fmul_rn(code[byte & 15u], absmax))));
}

// 8 weights a packed word (blocksize % 8 == 0: one absmax). A warp takes 4 x
// 32 consecutive words and lane L words L, L + 32, L + 64, L + 96, so each
// load is 128 contiguous bytes and each store 32 x 16 contiguous bytes (16
// output bytes a lane for bf16/f16: whole sectors, where a lane storing 64
// bytes would leave every store instruction half-sector pieces). The four
// loads go out before the first store; the 16 codes sit in shared memory
// (one bank each: no conflicts); the output bypasses L2 retention (.cs).
constexpr int kDequantWarps = 8, kDequantWordsPerLane = 4;

template <typename W, typename Out>
__global__ void __launch_bounds__(kDequantWarps * 32) dequantize_4bit_vec_kernel(const Packed4bit w, Out* out,
                                                                                 int64_t words, int block_shift) {
  __shared__ float code[16];
  if (threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t tile = (int64_t(blockIdx.x) * kDequantWarps + (threadIdx.x >> 5)) * (32 * kDequantWordsPerLane);
  const uint32_t* packed = reinterpret_cast<const uint32_t*>(w.packed);
  uint32_t v[kDequantWordsPerLane];
  float absmax[kDequantWordsPerLane];
#pragma unroll
  for (int c = 0; c < kDequantWordsPerLane; ++c) {
    const int64_t i = tile + c * 32 + lane;
    if (i < words) {
      v[c] = __ldcs(packed + i);
      absmax[c] = decode_absmax(w, block_shift >= 0 ? (i * 8) >> block_shift : (i * 8) / w.blocksize);
    }
  }
#pragma unroll
  for (int c = 0; c < kDequantWordsPerLane; ++c) {
    const int64_t i = tile + c * 32 + lane;
    if (i >= words) break;
    alignas(16) Out vals[8];
#pragma unroll
    for (int b = 0; b < 4; ++b) decode_byte<W, Out>(code, v[c] >> (8 * b), absmax[c], vals + 2 * b);
    uint4* dst = reinterpret_cast<uint4*>(out + i * 8);
#pragma unroll
    for (int j = 0; j < int(sizeof(vals) / 16); ++j) __stcs(dst + j, reinterpret_cast<const uint4*>(vals)[j]);
  }
}

template <typename W, typename Out>
__global__ void dequantize_4bit_kernel(const Packed4bit w, Out* out, int64_t numel) {
  const int64_t first = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (first >= numel) return;
  const int64_t last = first + 8 < numel ? first + 8 : numel;
  float code[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) code[i] = __ldg(w.code + i);
  int64_t block = -1;
  float absmax = 0.0f;
  for (int64_t e = first; e < last; ++e) {
    if (e / w.blocksize != block) {
      block = e / w.blocksize;
      absmax = decode_absmax(w, block);
    }
    const uint8_t byte = w.packed[e >> 1];
    const int q = (e & 1) ? (byte & 15) : (byte >> 4);
    const float v = to_float(from_float<W>(__fmul_rn(code[q], absmax)));
    out[e] = from_float<Out>(v);
  }
}

template <typename T>
__global__ void broadcast_rows_kernel(const T* bias, T* out, int64_t m, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < m * n) out[i] = bias[i % n];
}

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: throw_error("cuBLAS linear: expected f32, bf16 or f16, got " + std::string(dtype_name(dtype)));
  }
}

unsigned blocks_for(int64_t items, int threads) { return unsigned((items + threads - 1) / threads); }

}  // namespace

void dequantize_4bit_weight(DType out_dtype, const Packed4bit& w, void* out, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t numel = w.n * w.k;
  if (numel == 0) return;
  const bool vector = numel % 8 == 0 && w.blocksize % 8 == 0 && reinterpret_cast<uintptr_t>(w.packed) % 4 == 0 &&
                      reinterpret_cast<uintptr_t>(out) % 16 == 0;
  int block_shift = 0;  // a shift instead of a 64-bit division where the blocksize allows
  while (block_shift < 30 && (1 << block_shift) < w.blocksize) ++block_shift;
  if ((1 << block_shift) != w.blocksize) block_shift = -1;
  dispatch_device_float(w.weight_dtype, "dequantize_4bit", [&](auto wtag) {
    using W = decltype(wtag);
    dispatch_device_float(out_dtype, "dequantize_4bit", [&](auto otag) {
      using Out = decltype(otag);
      if (vector)
        dequantize_4bit_vec_kernel<W, Out>
            <<<blocks_for(numel / 8, kDequantWarps * 32 * kDequantWordsPerLane), kDequantWarps * 32, 0, stream>>>(
                w, static_cast<Out*>(out), numel / 8, block_shift);
      else
        dequantize_4bit_kernel<W, Out>
            <<<blocks_for((numel + 7) / 8, 256), 256, 0, stream>>>(w, static_cast<Out*>(out), numel);
    });
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

namespace {
Gemm4bitPath forced_path = Gemm4bitPath::kAuto;
int forced_split_k = 0;
// Batches past this go through dequantize + cuBLAS, whose tensor-core GEMM
// wins once the weight is reused over enough rows (H200: the tiled GEMM
// 45-212 us at 64 rows, 108-545 at 256; dequantize 31-152 us plus cuBLAS
// 27-127 at 64 and 35-181 at 256: the two meet near 100 rows).
constexpr int64_t kLargeMaxAuto = 96;
// On Hopper the wgmma GEMM takes the batches between the decode kernels and
// long prompts (H200, docs/cuda.md: at 17-20 rows 28-103 us against the
// tiled GEMM's 33-135, at 64 rows 29-110 against 44-206, at 256 rows 45-172
// against dequantize + cuBLAS's 71-360; at 16 rows the m <= 16 kernel and
// the tiled GEMM stay ahead: 24-91 us against 27-99). With stream-K and its
// output stored by TMA it also beats the model's dequantize-ahead path up to
// 1024 rows (7B prefill, same call: 0.84x -> 0.85x bf16 at 512 tokens, 0.90x
// -> 0.94x at 1024). Longer prompts dequantize (a projection ahead,
// overlapped); cuBLAS's lead grows with the rows.
constexpr int64_t kWgmmaFromRows = 17, kWgmmaMaxRows = 1024;
// Below that, the wgmma GEMM's 16-token tiles (two blocks an SM) lead the
// m <= 16 kernel on large weights: 9-16 rows from 2^25 values (H200, 16
// rows, us: 4096 x 11008 21.0 against 24.9, 11008 x 4096 20.7 against 22.7,
// 4096 x 22016 36.5 against 40.9, 8192 x 28672 75.0 against 80.0; 4096 x
// 4096 13.8 against 11.7 stays), 6-8 rows from 2^27 (8192 x 28672 at 8 rows
// 72.3 against 82.9; 4096 x 22016 37.6 against 36.4 stays). Double-quantized
// weights only at 9-16 rows below 2^27 values (4096 x 11008 at 16 rows 22.3
// against 25.6, 14336 x 4096 28.4 against 32.2; 8192 x 28672 95.8 against
// 78.6 stays, and at 6-8 rows the m <= 16 kernel leads everywhere). At 9-11
// rows of weights longer than wide (k > n) the m <= 16 kernel still leads
// (9 rows of 11008 x 4096: 19.1 against 20.7 us; 14336 x 4096 24.1 against
// 25.2; from 12 rows level or behind).
constexpr int64_t kWgmmaNarrowFromRows = 9, kWgmmaNarrowMinValues = int64_t(1) << 25, kWgmmaNarrowLongFromRows = 12;
constexpr int64_t kWgmmaNarrowestFromRows = 6, kWgmmaNarrowestMinValues = int64_t(1) << 27;

// On Hopper the cluster kernel (x staged, k cut across a cluster's blocks)
// leads both at 2-16 rows: H200, us at 16 rows (cluster / the kernel taken
// before): 4096 x 11008 15.5-15.7 / 20.8, 11008 x 4096 15.8-15.9 / 20.4,
// 8192 x 28672 64-68 / 74.9, 4096 x 22016 26.1 / 35.9, 4096 x 4096 8.7 /
// 11.4; at 8 rows 15.0 / 20.5 on 4096 x 11008. At 2-4 rows the m <= 16
// kernel keeps weights longer than wide (11008 x 4096 at 2 rows: 14.7
// against 15.6); on 8192 x 28672 the two are within the run-to-run spread
// there (59-62 against 59-65). Double-quantized weights take the same
// kernels (so that a weight gives the bits of its decoded twin).
bool cluster_leads(const Packed4bit& w, int64_t m) { return m >= 5 || (m >= 2 && w.n >= w.k); }

// Whether the wgmma GEMM's narrow tiles take m < kWgmmaFromRows rows of w
// (the rules above).
bool wgmma_narrow_leads(const Packed4bit& w, int64_t m) {
  if (m >= kWgmmaFromRows) return false;
  const int64_t values = w.n * w.k;
  const bool largest = values >= kWgmmaNarrowestMinValues;
  const bool narrow = m >= kWgmmaNarrowFromRows && values >= kWgmmaNarrowMinValues &&
                      (m >= kWgmmaNarrowLongFromRows || w.n >= w.k);
  if (w.qabsmax) return narrow && !largest;
  return narrow || (m >= kWgmmaNarrowestFromRows && largest);
}
}  // namespace

void set_gemm_4bit_path(Gemm4bitPath path, int split_k) {
  forced_path = path;
  forced_split_k = split_k;
}

Gemm4bitPath gemm_4bit_path(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  const bool gemv = fused4::gemv_supported(dtype, w, m, x), mma = fused4::mma_supported(dtype, w, m, x),
             wide = fused4::wide_supported(dtype, w, m, x), large = fused4::large_supported(dtype, w, m, x),
             wgmma = fused4::wgmma_supported(dtype, w, m, x);
  // (Its plan is worked out on the host: not for the one-row calls, unless forced.)
  const bool cluster = (m >= 2 || forced_path == Gemm4bitPath::kCluster) && fused4::cluster_supported(dtype, w, m, x);
  switch (forced_path) {
    case Gemm4bitPath::kWgmma: return wgmma ? Gemm4bitPath::kWgmma : Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kGemv: return gemv ? Gemm4bitPath::kGemv : Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kMma: return mma ? Gemm4bitPath::kMma : Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kMmaWide: return wide ? Gemm4bitPath::kMmaWide : Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kLarge: return large ? Gemm4bitPath::kLarge : Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kCluster: return cluster ? Gemm4bitPath::kCluster : Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kDequantize: return Gemm4bitPath::kDequantize;
    case Gemm4bitPath::kAuto: break;
  }
  // Measured on an H200 (docs/cuda.md): the GEMV leads at batch 1, on
  // Hopper the cluster kernel from 2 to 16 rows (cluster_leads), elsewhere
  // the tensor-core kernel from 2 to 16 (at 9-16 rows on large weights with
  // x arranged for it: 8192 x 28672 at 16 rows 80.6 us against the tiled
  // GEMM's 90.1), the tiled GEMM up to kLargeMaxAuto rows, or on Hopper the
  // wgmma GEMM from kWgmmaFromRows (and its narrow tiles from 6 or 9 rows on
  // large weights where the cluster kernel does not apply).
  // Batches of 1-4 never take the tiled or wgmma GEMM by themselves (their k
  // split allocates).
  const bool large_auto = large && m > fused4::kGemvMaxBatch && m <= kLargeMaxAuto;
  if (gemv && m == 1) return Gemm4bitPath::kGemv;
  if (wgmma && m >= kWgmmaFromRows && m <= kWgmmaMaxRows) return Gemm4bitPath::kWgmma;
  if (cluster && cluster_leads(w, m)) return Gemm4bitPath::kCluster;
  if (wgmma && wgmma_narrow_leads(w, m)) return Gemm4bitPath::kWgmma;
  if (large_auto && m > 8 && !mma) return Gemm4bitPath::kLarge;
  if (mma) return Gemm4bitPath::kMma;
  if (wide) return Gemm4bitPath::kMmaWide;
  if (gemv) return Gemm4bitPath::kGemv;
  if (large_auto) return Gemm4bitPath::kLarge;
  return Gemm4bitPath::kDequantize;
}

void gemm_4bit(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out,
               void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (m == 0 || w.n == 0) return;
  switch (gemm_4bit_path(dtype, w, m, x)) {
    case Gemm4bitPath::kGemv: fused4::gemv(dtype, x, m, w, bias, out, forced_split_k, stream); return;
    case Gemm4bitPath::kMma: fused4::mma(dtype, x, m, w, bias, out, forced_split_k, stream); return;
    case Gemm4bitPath::kMmaWide: fused4::wide(dtype, x, m, w, bias, out, stream); return;
    case Gemm4bitPath::kLarge: fused4::large(dtype, x, m, w, bias, out, forced_split_k, stream); return;
    case Gemm4bitPath::kWgmma: fused4::wgmma(dtype, x, m, w, bias, out, forced_split_k, stream); return;
    case Gemm4bitPath::kCluster: fused4::cluster(dtype, x, m, w, bias, out, stream); return;
    default: break;
  }
  // Prompt-sized batches and odd shapes: dequantize once, then cuBLAS.
  const size_t bytes = size_t(w.n) * size_t(w.k) * element_size(dtype);
  void* scratch = nullptr;
  LOWBIT_CUDA_CHECK(cudaMallocAsync(&scratch, bytes, stream));
  dequantize_4bit_weight(dtype, w, scratch, stream);
  gemm_dense(dtype, x, m, scratch, w.n, w.k, bias, out, stream);
  LOWBIT_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

void gemm_dense(DType dtype, const void* x, int64_t m, const void* w, int64_t n, int64_t k, const void* bias,
                void* out, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (m == 0 || n == 0) return;
  const float alpha = 1.0f;
  float beta = 0.0f;
  if (bias) {
    dispatch_device_float(dtype, "linear", [&](auto tag) {
      using T = decltype(tag);
      broadcast_rows_kernel<T><<<blocks_for(m * n, 256), 256, 0, stream>>>(static_cast<const T*>(bias),
                                                                            static_cast<T*>(out), m, n);
    });
    LOWBIT_CUDA_CHECK_LAUNCH();
    beta = 1.0f;
  }
  cublasHandle_t handle = cublas_handle();
  check_cublas(cublasSetStream(handle, stream), "cublasSetStream");
  const cudaDataType_t type = cuda_type(dtype);
  // Row-major out[m, n] = x[m, k] w[n, k]^T is column-major out^T = w^T x^T.
  check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w, type, int(k), x,
                            type, int(k), &beta, out, type, int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx (linear)");
}

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  if (weight.dtype() != x.dtype())
    throw_error("ops::linear on CUDA: the weight must have x's dtype (" + std::string(dtype_name(x.dtype())) +
                "), got " + weight.describe());
  if (bias.defined() && bias.dtype() != x.dtype())
    throw_error("ops::linear on CUDA: the bias must have x's dtype, got " + bias.describe());
  gemm_dense(x.dtype(), x.raw_data(), x.dim(0), weight.raw_data(), weight.dim(0), weight.dim(1),
             bias.defined() ? bias.raw_data() : nullptr, out.raw_data(), current_cuda_stream());
}

namespace {

// What a kernel's choice depends on (the packed codes' address, the shape and
// the block size), without touching the code table.
// (A double-quantized weight's u8 absmax is part of the choice: some kernels
// take only power-of-two nested blocks.)
Packed4bit shape_view(const Blockwise4bitWeight& w) {
  Packed4bit p;
  p.packed = static_cast<const uint8_t*>(w.packed.raw_data());
  p.blocksize = w.blocksize;
  p.n = w.out_features;
  p.k = w.in_features;
  p.weight_dtype = w.dtype;
  if (w.nested) {
    p.qabsmax = static_cast<const uint8_t*>(w.absmax.raw_data());
    p.nested_blocksize = w.nested->nested_blocksize;
  }
  return p;
}

// The 16 codes (and a double-quantized weight's 256 nested codes) copied to
// x's device when they live elsewhere; the copies live as long as this.
struct CodeTables {
  Tensor code, nested_code;
};

// The raw view of a 4-bit weight for a kernel on x's device.
Packed4bit packed_view(const Blockwise4bitWeight& w, const Tensor& x, CodeTables& tables) {
  const auto on_x = [&](const Tensor& t) { return t.device() == x.device() ? t : t.to(x.device()); };
  tables.code = on_x(w.code);
  Packed4bit p = shape_view(w);
  p.packed = w.packed.data<uint8_t>();
  p.code = tables.code.data<float>();
  if (!w.nested) {
    p.absmax = w.absmax.data<float>();
    return p;
  }
  const Blockwise4bitWeight::Nested& q = *w.nested;
  tables.nested_code = on_x(q.nested_code);
  p.qabsmax = w.absmax.data<uint8_t>();
  p.nested_absmax = q.nested_absmax.data<float>();
  p.nested_code = tables.nested_code.data<float>();
  p.nested_offset = q.offsets.front();
  for (size_t i = 0; i < q.part_starts.size(); ++i) {
    p.nested_part_start[i] = uint32_t(q.part_starts[i] / q.nested_blocksize);
    p.nested_part_offset[i] = q.offsets[i + 1];
  }
  return p;
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; }

}  // namespace

void linear_4bit(const Tensor& x, const Blockwise4bitWeight& w, const Tensor& bias, Tensor& out) {
  if (w.compute_dtype && *w.compute_dtype != x.dtype())
    throw_error("ops::linear_4bit on CUDA: compute dtype " + std::string(dtype_name(*w.compute_dtype)) +
                " differs from x's dtype " + std::string(dtype_name(x.dtype())) + "; cast x first");
  if (bias.defined() && bias.dtype() != x.dtype())
    throw_error("ops::linear_4bit on CUDA: the bias must have x's dtype, got " + bias.describe());
  CodeTables tables;
  const Packed4bit p = packed_view(w, x, tables);
  gemm_4bit(x.dtype(), x.raw_data(), x.dim(0), p, bias.defined() ? bias.raw_data() : nullptr, out.raw_data(),
            current_cuda_stream());
}

void dequantize_4bit_weight(const Blockwise4bitWeight& w, Tensor& out) {
  CodeTables tables;
  const Packed4bit p = packed_view(w, out, tables);
  dequantize_4bit_weight(out.dtype(), p, out.raw_data(), current_stream());
}

bool linear_4bit_dequantizes(int64_t rows, DType dtype, const Blockwise4bitWeight& w) {
  if (w.compute_dtype && *w.compute_dtype != dtype) return false;
  // (x's alignment only matters to the fused kernels.)
  return rows > 0 && gemm_4bit_path(dtype, shape_view(w), rows, nullptr) == Gemm4bitPath::kDequantize;
}

bool linear_4bit_fuses(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       const Tensor& out) {
  const DType dtype = src.dtype();
  const Device device = src.device();
  const int64_t rows = src.dim(0);
  if (f.output == LinearFusion::Output::SwiGLU && w.out_features % 2 != 0) return false;
  if (rows < 1 || (dtype != DType::BF16 && dtype != DType::F16) || (w.compute_dtype && *w.compute_dtype != dtype))
    return false;
  if (w.packed.device() != device || w.absmax.device() != device) return false;
  if (w.nested && w.nested->nested_absmax.device() != device) return false;
  if (bias.defined() && (bias.dtype() != dtype || bias.device() != device)) return false;
  // Blocks read the input while others already write their rows.
  const auto* s0 = static_cast<const char*>(src.raw_data());
  const auto* o0 = static_cast<const char*>(out.raw_data());
  if (s0 < o0 + out.nbytes() && o0 < s0 + src.nbytes()) return false;
  if (rows > 1) {
    // Prompts: a SwiGLU output in the wgmma GEMM's epilogue, where that GEMM
    // takes these rows anyway (it saves the swiglu kernel's pass and half
    // the GEMM's stores; fused4::wgmma_swiglu_supported: from 128 rows).
    const Packed4bit view = shape_view(w);
    return f.input == LinearFusion::Input::Plain && f.output == LinearFusion::Output::SwiGLU &&
           gemm_4bit_path(dtype, view, rows, s0) == Gemm4bitPath::kWgmma && forced_split_k <= 1 &&
           fused4::wgmma_swiglu_supported(dtype, view, rows, s0, o0);
  }
  if (f.input == LinearFusion::Input::RmsNorm &&
      (!f.norm_weight.defined() || f.norm_weight.dtype() != dtype || f.norm_weight.device() != device ||
       !aligned16(f.norm_weight)))
    return false;
  return fused4::gemv_fused_supported(dtype, shape_view(w), src.raw_data());
}

void linear_4bit_fused(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       Tensor& out) {
  CodeTables tables;
  const Packed4bit p = packed_view(w, src, tables);
  if (src.dim(0) > 1) {
    fused4::wgmma(src.dtype(), src.raw_data(), src.dim(0), p, bias.defined() ? bias.raw_data() : nullptr,
                  out.raw_data(), forced_split_k, current_stream(), true);
    return;
  }
  fused4::GemvInput in;
  in.kind = f.input == LinearFusion::Input::RmsNorm  ? fused4::GemvInput::kRmsNorm
            : f.input == LinearFusion::Input::SwiGLU ? fused4::GemvInput::kSwiGLU
                                                     : fused4::GemvInput::kPlain;
  in.norm_weight = f.input == LinearFusion::Input::RmsNorm ? f.norm_weight.raw_data() : nullptr;
  in.eps = f.eps;
  in.output = f.output == LinearFusion::Output::Add      ? fused4::GemvInput::kAdd
               : f.output == LinearFusion::Output::SwiGLU ? fused4::GemvInput::kSwiGLUOut
                                                          : fused4::GemvInput::kStore;
  fused4::gemv_fused(src.dtype(), src.raw_data(), p, bias.defined() ? bias.raw_data() : nullptr, in, out.raw_data(),
                     current_stream());
}

}  // namespace lowbit::ops::cuda
