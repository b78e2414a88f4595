// Blockwise 4-bit (NF4/FP4) linear on the CPU, dequantization fused into the
// product.
//
// Each block of `blocksize` weights shares one absmax, so a block's 16 possible
// weight values are computed once (code[q] * absmax, rounded to the weight's
// dtype, then to the compute dtype: what bitsandbytes' dequantize + cast
// produce) and the block's nibbles only index that table.
// - One token (GEMV): rows are split over the threads; each row streams its
//   packed bytes once, half a byte per weight (8x fewer bytes than f32).
// - Several tokens: weight tiles are dequantized to f32 and multiplied by
//   OpenBLAS (gemm_tiled), so prompts run at GEMM speed.
#include "lowbit/core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/gemv_kernels.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {
namespace {

template <typename W, typename C>
inline void block_table(const float* code, float absmax, float* table) {
  for (int i = 0; i < 16; ++i) table[i] = detail::round_to<C>(detail::round_to<W>(code[i] * absmax));
}

inline int nibble(const uint8_t* packed, int64_t e) {
  const uint8_t b = packed[e >> 1];
  return (e & 1) ? (b & 0x0f) : (b >> 4);
}

// Dequantizes weight elements [first, first + count) to f32.
template <typename W, typename C>
void dequantize_range(const Blockwise4bitWeight& w, int64_t first, int64_t count, float* out) {
  const uint8_t* packed = w.packed.data<uint8_t>();
  const float* absmax = w.absmax.data<float>();
  const float* code = w.code.data<float>();
  float table[16];
  int64_t e = first;
  const int64_t end = first + count;
  while (e < end) {
    const int64_t block = e / w.blocksize;
    const int64_t block_end = std::min(end, (block + 1) * w.blocksize);
    block_table<W, C>(code, absmax[block], table);
    for (; e < block_end; ++e) out[e - first] = table[nibble(packed, e)];
  }
}

// The rounding the vector GEMV applies to each block's values for weight
// dtype W and compute dtype C, when one rounding stands for both (nested
// formats: f32 > bf16, f32 > f16); otherwise the scalar path runs.
template <typename W, typename C>
constexpr bool vector_rounding(TableRounding& r) {
  constexpr bool w16 = !std::is_same_v<W, float>, c16 = !std::is_same_v<C, float>;
  if constexpr (w16 && c16 && !std::is_same_v<W, C>) {
    return false;
  } else if constexpr (std::is_same_v<W, bf16> || std::is_same_v<C, bf16>) {
    r = TableRounding::BF16;
  } else if constexpr (std::is_same_v<W, f16> || std::is_same_v<C, f16>) {
    r = TableRounding::F16;
  } else {
    r = TableRounding::None;
  }
  return true;
}

template <typename W, typename C>
void gemv(const Blockwise4bitWeight& w, const float* x, float* out) {
  const int64_t k = w.in_features;
  TableRounding rounding = TableRounding::None;
  const bool vector = vector_rounding<W, C>(rounding) && k % w.blocksize == 0 && w.blocksize % 4 == 0;
  std::vector<float> x_even, x_odd;
  if (vector) split_even_odd(x, k, x_even, x_odd);
  parallel_for(0, size_t(w.out_features), gemv_row_grain(k), [&](size_t lo, size_t hi) {
    std::vector<float> row;
    for (size_t r = lo; r < hi; ++r) {
      if (vector) {
        out[r] = dot_4bit(w.packed.data<uint8_t>() + r * size_t(k) / 2, w.absmax.data<float>() + r * k / w.blocksize,
                          w.code.data<float>(), w.blocksize, k, x_even.data(), x_odd.data(), rounding);
        continue;
      }
      row.resize(size_t(k));
      dequantize_range<W, C>(w, int64_t(r) * k, k, row.data());
      float sum = 0.0f;
      for (int64_t i = 0; i < k; ++i) sum += x[i] * row[size_t(i)];
      out[r] = sum;
    }
  });
}

}  // namespace

void linear_4bit(const Tensor& x, const Blockwise4bitWeight& w, const Tensor& bias, Tensor& out) {
  const int64_t tokens = x.dim(0), k = w.in_features, n = w.out_features;
  std::vector<float> xf = to_f32_vector(x);
  std::vector<float> acc(static_cast<size_t>(tokens * n));
  const DType compute = w.compute_dtype.value_or(x.dtype());
  detail::dispatch_float("linear_4bit", w.dtype, [&]<typename W>(W) {
    detail::dispatch_float("linear_4bit", compute, [&]<typename C>(C) {
      if (compute != x.dtype())
        for (float& v : xf) v = detail::round_to<C>(v);
      if (tokens == 1) {
        gemv<W, C>(w, xf.data(), acc.data());
      } else {
        gemm_tiled(xf.data(), tokens, k, n,
                   [&](int64_t first, int64_t last, float* dst) {
                     dequantize_range<W, C>(w, first * k, (last - first) * k, dst);
                   },
                   acc.data());
      }
      // The output of the compute dtype, cast back to x's by the caller.
      if (compute != x.dtype() && !bias.defined())
        for (float& v : acc) v = detail::round_to<C>(v);
    });
  });
  if (compute != x.dtype() && bias.defined()) {
    // Bias in the compute dtype too, then one cast to x's dtype.
    Tensor staged = Tensor::empty(out.shape(), compute);
    store_output(acc.data(), bias.dtype() == compute ? bias : bias.cast(compute), staged);
    const std::vector<float> y = to_f32_vector(staged);
    store_output(y.data(), Tensor{}, out);
    return;
  }
  store_output(acc.data(), bias, out);
}

void dequantize_4bit_weight(const Blockwise4bitWeight& w, Tensor& out) {
  const int64_t k = w.in_features;
  detail::dispatch_float("dequantize_4bit_weight", w.dtype, [&]<typename W>(W) {
    detail::dispatch_float("dequantize_4bit_weight", out.dtype(), [&]<typename C>(C) {
      C* dst = out.data<C>();
      parallel_for(0, size_t(w.out_features), gemv_row_grain(k), [&](size_t lo, size_t hi) {
        std::vector<float> row(static_cast<size_t>(k));
        for (size_t r = lo; r < hi; ++r) {
          dequantize_range<W, C>(w, int64_t(r) * k, k, row.data());
          for (int64_t i = 0; i < k; ++i) dst[int64_t(r) * k + i] = detail::store<C>(row[size_t(i)]);
        }
      });
    });
  });
}

}  // namespace lowbit::ops::cpu
