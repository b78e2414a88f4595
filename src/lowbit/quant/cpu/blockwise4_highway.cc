// Vectorized 4-bit NF4/FP4 kernels (Highway, compiled once per x86/ARM
// target by foreach_target and chosen at run time). Bit-identical to
// blockwise4_ref.cc; tests/quant/kernels_test.cc compares them.
//
// Dequantize: per block, the 16 possible outputs code[q] * absmax are
// computed once and rounded to the output type, then split into byte planes;
// each packed byte's two nibbles index those planes with a byte shuffle
// (pshufb/tbl), 32 elements per 16 packed bytes. Rounding the 16 products is
// exactly rounding each element's product, so the result is unchanged.
//
// Quantize: per block, absmax by compare-select (NaN never wins a `>`, as
// fmaxf skips it), then each scaled value's code is the number of decision
// thresholds it exceeds (the NF4 tree is a binary search over them): a 4-step
// search with lane permutes where 16 floats fit a vector, else compares. Even
// and odd lanes are paired in registers and stored as packed bytes.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/cpu/blockwise4_highway.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "lowbit/core/half.h"
#include "lowbit/quant/kernels.h"
#include "quant/cpu/blockwise4_highway.h"
#include "quant/cpu/convert-inl.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"
#include "quant/reciprocal.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::quant::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR
// No 128-bit vectors on this target: the reference kernels serve it.
template <typename T>
void dequantize_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                      int64_t count, T* out) {
  const float* lut = lut_4bit(type);
  for (int64_t i = first; i < first + count; ++i) {
    const uint8_t byte = packed[i / 2];
    out[i - first] = from_f32<T>(lut[(i & 1) ? (byte & 15) : (byte >> 4)] * absmax[i / blocksize]);
  }
}
template <typename T>
void quantize_run(const T* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  ref::quantize_4bit(x, n, type, blocksize, packed, absmax);
}
#else

using D8 = hn::Full128<uint8_t>;
using D16 = hn::Full128<uint16_t>;
using D32 = hn::Full128<uint32_t>;
using D64 = hn::Full128<uint64_t>;
using DF4 = hn::Full128<float>;
using V8 = hn::Vec<D8>;

// The 16 outputs of one block as byte planes: plane[k] holds byte k of each
// output, indexed by the 4-bit code.
template <typename T>
struct BlockTable {
  static constexpr int kBytes = sizeof(T);
  V8 plane[kBytes];
};

template <typename T>
HWY_INLINE BlockTable<T> make_table(const hn::Vec<DF4> lut[4], float absmax) {
  const D8 d8;
  const D32 d32;
  const D64 d64;
  const DF4 df;
  BlockTable<T> table;
  V8 grouped[4];
  for (int j = 0; j < 4; ++j) {
    const auto prod = hn::Mul(lut[j], hn::Set(df, absmax));
    const hn::Vec<D32> bits = storage_bits<T>(df, prod);
    // Gather byte k of the four outputs into u32 lane k.
    alignas(16) static constexpr uint8_t kGroup[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    grouped[j] = hn::TableLookupBytes(hn::BitCast(d8, bits), hn::Load(d8, kGroup));
  }
  // 4x4 transpose of u32 lanes: plane k = lane k of grouped[0..3].
  const auto g0 = hn::BitCast(d32, grouped[0]), g1 = hn::BitCast(d32, grouped[1]);
  const auto g2 = hn::BitCast(d32, grouped[2]), g3 = hn::BitCast(d32, grouped[3]);
  const auto t0 = hn::BitCast(d64, hn::InterleaveLower(d32, g0, g1));
  const auto t1 = hn::BitCast(d64, hn::InterleaveLower(d32, g2, g3));
  table.plane[0] = hn::BitCast(d8, hn::InterleaveLower(d64, t0, t1));
  table.plane[1] = hn::BitCast(d8, hn::InterleaveUpper(d64, t0, t1));
  if constexpr (sizeof(T) == 4) {
    const auto t2 = hn::BitCast(d64, hn::InterleaveUpper(d32, g0, g1));
    const auto t3 = hn::BitCast(d64, hn::InterleaveUpper(d32, g2, g3));
    table.plane[2] = hn::BitCast(d8, hn::InterleaveLower(d64, t2, t3));
    table.plane[3] = hn::BitCast(d8, hn::InterleaveUpper(d64, t2, t3));
  }
  return table;
}

// Writes the 16 outputs selected by 16 nibble indices.
template <typename T>
HWY_INLINE void store_lookup(const BlockTable<T>& table, V8 idx, T* out) {
  const D16 d16;
  const D32 d32;
  if constexpr (sizeof(T) == 2) {
    const V8 lo = hn::TableLookupBytes(table.plane[0], idx);
    const V8 hi = hn::TableLookupBytes(table.plane[1], idx);
    uint16_t* o = reinterpret_cast<uint16_t*>(out);
    hn::StoreU(hn::ZipLower(d16, lo, hi), d16, o);
    hn::StoreU(hn::ZipUpper(d16, lo, hi), d16, o + 8);
  } else {
    const V8 b0 = hn::TableLookupBytes(table.plane[0], idx), b1 = hn::TableLookupBytes(table.plane[1], idx);
    const V8 b2 = hn::TableLookupBytes(table.plane[2], idx), b3 = hn::TableLookupBytes(table.plane[3], idx);
    const auto lo01 = hn::ZipLower(d16, b0, b1), lo23 = hn::ZipLower(d16, b2, b3);
    const auto hi01 = hn::ZipUpper(d16, b0, b1), hi23 = hn::ZipUpper(d16, b2, b3);
    uint32_t* o = reinterpret_cast<uint32_t*>(out);
    hn::StoreU(hn::ZipLower(d32, lo01, lo23), d32, o);
    hn::StoreU(hn::ZipUpper(d32, lo01, lo23), d32, o + 4);
    hn::StoreU(hn::ZipLower(d32, hi01, hi23), d32, o + 8);
    hn::StoreU(hn::ZipUpper(d32, hi01, hi23), d32, o + 12);
  }
}

// Dequantizes elements [first, first + count) of a packed tensor.
template <typename T>
void dequantize_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                      int64_t count, T* out) {
  const D8 d8;
  const D16 d16;
  const DF4 df;
  const float* lut_values = lut_4bit(type);
  hn::Vec<DF4> lut[4];
  for (int j = 0; j < 4; ++j) lut[j] = hn::LoadU(df, lut_values + 4 * j);
  const auto low_nibble = hn::Set(d8, uint8_t{0x0f});
  const int64_t end = first + count;
  int64_t i = first;
  while (i < end) {
    const int64_t block = i / blocksize;
    const int64_t block_end = std::min(end, (block + 1) * blocksize);
    // Scalar until the position is 32-element aligned inside the block.
    while (i < block_end && (i & 31) != 0) {
      const uint8_t byte = packed[i / 2];
      out[i - first] = from_f32<T>(lut_values[(i & 1) ? (byte & 15) : (byte >> 4)] * absmax[block]);
      ++i;
    }
    if (block_end - i >= 32) {
      const BlockTable<T> table = make_table<T>(lut, absmax[block]);
      for (; i + 32 <= block_end; i += 32) {
        const V8 p = hn::LoadU(d8, packed + i / 2);
        const V8 hi = hn::And(hn::BitCast(d8, hn::ShiftRight<4>(hn::BitCast(d16, p))), low_nibble);
        const V8 lo = hn::And(p, low_nibble);
        store_lookup(table, hn::InterleaveLower(d8, hi, lo), out + (i - first));
        store_lookup(table, hn::InterleaveUpper(d8, hi, lo), out + (i - first) + 16);
      }
    }
    for (; i < block_end; ++i) {
      const uint8_t byte = packed[i / 2];
      out[i - first] = from_f32<T>(lut_values[(i & 1) ? (byte & 15) : (byte >> 4)] * absmax[block]);
    }
  }
}

// Codes of x * scale: the number of decision thresholds each lane exceeds
// (NF4's tree is a binary search over its 15 thresholds; FP4 counts the 7
// magnitude thresholds, maps the rank to its code and adds the sign bit).
// One step of the NF4 binary search: test the threshold at code | (step-1).
template <int kStep, class DF, class V, class VI>
HWY_INLINE VI nf4_search_step(DF df, V v, V thresholds, VI code) {
  const hn::RebindToSigned<DF> di;
  const auto t = hn::TableLookupLanes(thresholds, hn::IndicesFromVec(df, hn::Or(code, hn::Set(di, kStep - 1))));
  return hn::IfThenElse(hn::RebindMask(di, hn::Gt(v, t)), hn::Or(code, hn::Set(di, kStep)), code);
}

template <QuantType kType, class DF, class V>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> codes_of(DF df, V v, V nf4_thresholds) {
  const hn::RebindToSigned<DF> di;
  hn::Vec<decltype(di)> code = hn::Zero(di);
  if constexpr (kType == QuantType::NF4) {
    if constexpr (hn::MaxLanes(df) >= 16) {
      // The thresholds fit one vector: a 4-step binary search with lane
      // permutes instead of 15 compares.
      code = nf4_search_step<8>(df, v, nf4_thresholds, code);
      code = nf4_search_step<4>(df, v, nf4_thresholds, code);
      code = nf4_search_step<2>(df, v, nf4_thresholds, code);
      code = nf4_search_step<1>(df, v, nf4_thresholds, code);
    } else {
      for (float t : scalar::kNF4Thresholds) code = hn::Sub(code, hn::BitCast(di, hn::VecFromMask(df, hn::Gt(v, hn::Set(df, t)))));
    }
  } else {
    const auto a = hn::Abs(v);
    for (float t : scalar::kFP4Thresholds) code = hn::Sub(code, hn::BitCast(di, hn::VecFromMask(df, hn::Gt(a, hn::Set(df, t)))));
    // rank -> FP4 code (kFP4CodeByRank): flip bit 2 when bit 1 is set.
    code = hn::Xor(code, hn::ShiftLeft<1>(hn::And(code, hn::Set(di, 2))));
    code = hn::Or(code, hn::And(hn::BitCast(di, hn::VecFromMask(df, hn::Lt(v, hn::Zero(df)))), hn::Set(di, 8)));
  }
  return code;
}

// Quantizes one full block (blocksize a multiple of twice the lane count)
// straight into packed bytes; returns its absmax.
template <QuantType kType, typename T>
float quantize_block(const T* x, int blocksize, uint8_t* packed) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8n;
  const int N = int(hn::Lanes(df));
  auto acc = hn::Set(df, -FLT_MAX);
  for (int i = 0; i < blocksize; i += N) {
    const auto a = hn::Abs(load_f32(df, x + i));
    acc = hn::IfThenElse(hn::Gt(a, acc), a, acc);
  }
  const float absmax = hn::GetLane(hn::MaxOfLanes(df, acc));
  const auto scale = hn::Set(df, gpu_reciprocal(absmax));
  // Lane 15 (+Inf) and beyond are never indexed.
  HWY_ALIGN static constexpr float kPaddedThresholds[64] = {
      scalar::kNF4Thresholds[0], scalar::kNF4Thresholds[1], scalar::kNF4Thresholds[2], scalar::kNF4Thresholds[3],
      scalar::kNF4Thresholds[4], scalar::kNF4Thresholds[5], scalar::kNF4Thresholds[6], scalar::kNF4Thresholds[7],
      scalar::kNF4Thresholds[8], scalar::kNF4Thresholds[9], scalar::kNF4Thresholds[10], scalar::kNF4Thresholds[11],
      scalar::kNF4Thresholds[12], scalar::kNF4Thresholds[13], scalar::kNF4Thresholds[14], HUGE_VALF};
  const auto nf4_thresholds = hn::Load(df, kPaddedThresholds);
  for (int i = 0; i < blocksize; i += 2 * N) {
    const auto c0 = codes_of<kType>(df, hn::Mul(load_f32(df, x + i), scale), nf4_thresholds);
    const auto c1 = codes_of<kType>(df, hn::Mul(load_f32(df, x + i + N), scale), nf4_thresholds);
    // Even elements to the high nibble, odd to the low one.
    const auto bytes = hn::Or(hn::ShiftLeft<4>(hn::ConcatEven(di, c1, c0)), hn::ConcatOdd(di, c1, c0));
    hn::StoreU(hn::DemoteTo(d8n, bytes), d8n, packed + i / 2);
  }
  return absmax;
}

template <typename T>
void quantize_run(const T* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  const hn::ScalableTag<float> df;
  const int64_t full = (blocksize % (2 * int64_t(hn::Lanes(df))) == 0) ? n / blocksize : 0;
  for (int64_t b = 0; b < full; ++b) {
    absmax[b] = type == QuantType::NF4 ? quantize_block<QuantType::NF4>(x + b * blocksize, blocksize, packed + b * blocksize / 2)
                                       : quantize_block<QuantType::FP4>(x + b * blocksize, blocksize, packed + b * blocksize / 2);
  }
  if (full * blocksize < n)
    ref::quantize_4bit(x + full * blocksize, n - full * blocksize, type, blocksize, packed + full * blocksize / 2,
                       absmax + full);
}

#endif  // HWY_TARGET == HWY_SCALAR

void dequantize_range_f32(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                          int64_t count, float* out) {
  dequantize_range(packed, absmax, type, blocksize, first, count, out);
}
void dequantize_range_f16(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                          int64_t count, f16* out) {
  dequantize_range(packed, absmax, type, blocksize, first, count, out);
}
void dequantize_range_bf16(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, bf16* out) {
  dequantize_range(packed, absmax, type, blocksize, first, count, out);
}

void quantize_run_f32(const float* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  quantize_run(x, n, type, blocksize, packed, absmax);
}
void quantize_run_f16(const f16* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  quantize_run(x, n, type, blocksize, packed, absmax);
}
void quantize_run_bf16(const bf16* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  quantize_run(x, n, type, blocksize, packed, absmax);
}

}  // namespace lowbit::quant::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::quant::cpu {

HWY_EXPORT(dequantize_range_f32);
HWY_EXPORT(dequantize_range_f16);
HWY_EXPORT(dequantize_range_bf16);
HWY_EXPORT(quantize_run_f32);
HWY_EXPORT(quantize_run_f16);
HWY_EXPORT(quantize_run_bf16);

void dequantize_4bit_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, float* out) {
  HWY_DYNAMIC_DISPATCH(dequantize_range_f32)(packed, absmax, type, blocksize, first, count, out);
}
void dequantize_4bit_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, f16* out) {
  HWY_DYNAMIC_DISPATCH(dequantize_range_f16)(packed, absmax, type, blocksize, first, count, out);
}
void dequantize_4bit_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, bf16* out) {
  HWY_DYNAMIC_DISPATCH(dequantize_range_bf16)(packed, absmax, type, blocksize, first, count, out);
}
void quantize_4bit_run(const float* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  HWY_DYNAMIC_DISPATCH(quantize_run_f32)(x, n, type, blocksize, packed, absmax);
}
void quantize_4bit_run(const f16* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  HWY_DYNAMIC_DISPATCH(quantize_run_f16)(x, n, type, blocksize, packed, absmax);
}
void quantize_4bit_run(const bf16* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  HWY_DYNAMIC_DISPATCH(quantize_run_bf16)(x, n, type, blocksize, packed, absmax);
}

}  // namespace lowbit::quant::cpu
#endif  // HWY_ONCE
