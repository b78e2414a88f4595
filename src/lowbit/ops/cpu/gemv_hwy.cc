// Highway bodies of gemv_kernels.h, one copy per target (foreach_target.h
// re-includes this file), dispatched at run time to the best the CPU has.
//
// dot_4bit: per block, the 16 possible weight values are one vector (code
// table times absmax, rounded with integer ops); on 16-lane targets (AVX-512)
// a byte's two nibbles index it with one permute each (four running sums),
// elsewhere with a gather. x is pre-split into even/odd elements so nibbles need no shuffle.
// Memory traffic is half a byte per weight plus x, against 4 for f32.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/cpu/gemv_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "ops/cpu/gemv_kernels.h"
#include "ops/dispatch.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::ops::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rounds f32 lanes to bf16 / f16 precision (nearest even). For f16 this is
// exact only for zero and |v| in f16's normal range; the caller checks.
template <class D, class V>
V RoundLanes(D d, V v, TableRounding rounding) {
  const hn::RebindToUnsigned<D> du;
  auto u = hn::BitCast(du, v);
  if (rounding == TableRounding::BF16) {
    u = hn::Add(u, hn::Add(hn::Set(du, 0x7fffu), hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u))));
    u = hn::And(u, hn::Set(du, 0xffff0000u));
  } else if (rounding == TableRounding::F16) {
    u = hn::Add(u, hn::Add(hn::Set(du, 0xfffu), hn::And(hn::ShiftRight<13>(u), hn::Set(du, 1u))));
    u = hn::And(u, hn::Set(du, 0xffffe000u));
  }
  return hn::BitCast(d, u);
}

// The 16 values of one block, rounded; scalar when f16 rounding meets values
// outside f16's normal range.
void BlockTable(const float* code, float absmax, TableRounding rounding, float* table) {
  bool scalar = false;
  if (rounding == TableRounding::F16)
    for (int i = 0; i < 16; ++i) {
      const float a = std::fabs(code[i] * absmax);
      scalar |= a != 0.0f && (a < 6.103515625e-05f || a >= 65520.0f);
    }
  if (scalar) {
    for (int i = 0; i < 16; ++i) table[i] = detail::round_to<f16>(code[i] * absmax);
    return;
  }
  const hn::CappedTag<float, 16> d;
  for (size_t i = 0; i < 16; i += hn::Lanes(d))
    hn::StoreU(RoundLanes(d, hn::Mul(hn::LoadU(d, code + i), hn::Set(d, absmax)), rounding), d, table + i);
}

// The block's 16 values as one vector of a 16-lane target, kept in a register.
template <class D>
hn::Vec<D> BlockVector(D d, hn::Vec<D> code, float absmax, TableRounding rounding) {
  const auto t = RoundLanes(d, hn::Mul(code, hn::Set(d, absmax)), rounding);
  if (rounding != TableRounding::F16) return t;
  const auto a = hn::Abs(hn::Mul(code, hn::Set(d, absmax)));
  const auto outside = hn::And(hn::Ne(a, hn::Zero(d)), hn::Or(hn::Lt(a, hn::Set(d, 6.103515625e-05f)),
                                                              hn::Ge(a, hn::Set(d, 65520.0f))));
  if (hn::AllFalse(d, outside)) return t;
  HWY_ALIGN float table[16];
  hn::StoreU(code, d, table);
  BlockTable(table, absmax, rounding, table);
  return hn::Load(d, table);
}

float Dot4bit(const uint8_t* packed, const float* absmax, const float* code, int blocksize, int64_t k,
              const float* x_even, const float* x_odd, TableRounding rounding) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::Rebind<uint8_t, decltype(di)> du8;
  const int64_t lanes = int64_t(hn::Lanes(d));
  const int64_t bytes_per_block = blocksize / 2;
  const int64_t blocks = k / blocksize;
  if constexpr (HWY_MAX_BYTES >= 64) {
    // AVX-512: 32 bytes (64 weights) per step into four independent sums, so
    // FMA latency does not serialize the loop; the table never leaves a register.
    if (lanes == 16 && bytes_per_block % 32 == 0) {
      const auto code_v = hn::LoadU(d, code);
      const auto mask = hn::Set(di, 15);
      auto acc0 = hn::Zero(d), acc1 = hn::Zero(d), acc2 = hn::Zero(d), acc3 = hn::Zero(d);
      for (int64_t b = 0; b < blocks; ++b) {
        const auto t = BlockVector(d, code_v, absmax[b], rounding);
        const uint8_t* p = packed + b * bytes_per_block;
        const float* xe = x_even + b * bytes_per_block;
        const float* xo = x_odd + b * bytes_per_block;
        for (int64_t j = 0; j < bytes_per_block; j += 32) {
          const auto q0 = hn::PromoteTo(di, hn::LoadU(du8, p + j));
          const auto q1 = hn::PromoteTo(di, hn::LoadU(du8, p + j + 16));
          acc0 = hn::MulAdd(hn::TableLookupLanes(t, hn::IndicesFromVec(d, hn::ShiftRight<4>(q0))),
                            hn::LoadU(d, xe + j), acc0);
          acc1 = hn::MulAdd(hn::TableLookupLanes(t, hn::IndicesFromVec(d, hn::And(q0, mask))), hn::LoadU(d, xo + j),
                            acc1);
          acc2 = hn::MulAdd(hn::TableLookupLanes(t, hn::IndicesFromVec(d, hn::ShiftRight<4>(q1))),
                            hn::LoadU(d, xe + j + 16), acc2);
          acc3 = hn::MulAdd(hn::TableLookupLanes(t, hn::IndicesFromVec(d, hn::And(q1, mask))),
                            hn::LoadU(d, xo + j + 16), acc3);
        }
      }
      return hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(acc0, acc1), hn::Add(acc2, acc3))));
    }
  }
  HWY_ALIGN float table[16];
  auto acc_even = hn::Zero(d), acc_odd = hn::Zero(d);
  float tail = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    BlockTable(code, absmax[b], rounding, table);
    const uint8_t* p = packed + b * bytes_per_block;
    const float* xe = x_even + b * bytes_per_block;
    const float* xo = x_odd + b * bytes_per_block;
    int64_t j = 0;
    for (; j + lanes <= bytes_per_block; j += lanes) {
      const auto bytes = hn::PromoteTo(di, hn::LoadU(du8, p + j));
      const auto hi = hn::ShiftRight<4>(bytes), lo = hn::And(bytes, hn::Set(di, 15));
      acc_even = hn::MulAdd(hn::GatherIndex(d, table, hi), hn::LoadU(d, xe + j), acc_even);
      acc_odd = hn::MulAdd(hn::GatherIndex(d, table, lo), hn::LoadU(d, xo + j), acc_odd);
    }
    for (; j < bytes_per_block; ++j) tail += xe[j] * table[p[j] >> 4] + xo[j] * table[p[j] & 15];
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(acc_even, acc_odd))) + tail;
}

int32_t DotI8(const int8_t* a, const int8_t* b, int64_t n) {
#if HWY_TARGET == HWY_SCALAR
  int32_t total = 0;
  for (int64_t i = 0; i < n; ++i) total += int32_t(a[i]) * int32_t(b[i]);
  return total;
#else
  const hn::ScalableTag<int32_t> d32;
  const hn::Repartition<int16_t, decltype(d32)> d16;
  const hn::Rebind<int8_t, decltype(d16)> d8;
  const int64_t lanes = int64_t(hn::Lanes(d16));
  auto sum0 = hn::Zero(d32), sum1 = hn::Zero(d32);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto va = hn::PromoteTo(d16, hn::LoadU(d8, a + i));
    const auto vb = hn::PromoteTo(d16, hn::LoadU(d8, b + i));
    sum0 = hn::ReorderWidenMulAccumulate(d32, va, vb, sum0, sum1);
  }
  int32_t total = hn::GetLane(hn::SumOfLanes(d32, hn::Add(sum0, sum1)));
  for (; i < n; ++i) total += int32_t(a[i]) * int32_t(b[i]);
  return total;
#endif
}

// H: Highway's 16-bit float type; L: lowbit's, for the scalar tail.
template <typename H, typename L>
float Dot16(const L* wl, const float* x, int64_t n) {
  const H* w = reinterpret_cast<const H*>(wl);
  const hn::ScalableTag<float> d;
  const hn::Rebind<H, decltype(d)> dh;
  const int64_t lanes = int64_t(hn::Lanes(d));
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    acc0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, w + i)), hn::LoadU(d, x + i), acc0);
    acc1 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, w + i + lanes)), hn::LoadU(d, x + i + lanes), acc1);
  }
  float total = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
  for (; i < n; ++i) total += to_f32(wl[i]) * x[i];
  return total;
}

float DotF32(const float* w, const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = int64_t(hn::Lanes(d));
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d), acc2 = hn::Zero(d), acc3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(d, w + i), hn::LoadU(d, x + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(d, w + i + lanes), hn::LoadU(d, x + i + lanes), acc1);
    acc2 = hn::MulAdd(hn::LoadU(d, w + i + 2 * lanes), hn::LoadU(d, x + i + 2 * lanes), acc2);
    acc3 = hn::MulAdd(hn::LoadU(d, w + i + 3 * lanes), hn::LoadU(d, x + i + 3 * lanes), acc3);
  }
  for (; i + lanes <= n; i += lanes) acc0 = hn::MulAdd(hn::LoadU(d, w + i), hn::LoadU(d, x + i), acc0);
  float total = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(acc0, acc1), hn::Add(acc2, acc3))));
  for (; i < n; ++i) total += w[i] * x[i];
  return total;
}

float DotBf16(const bf16* w, const float* x, int64_t n) { return Dot16<hwy::bfloat16_t>(w, x, n); }
float DotF16(const f16* w, const float* x, int64_t n) { return Dot16<hwy::float16_t>(w, x, n); }

}  // namespace lowbit::ops::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::ops::cpu {

HWY_EXPORT(Dot4bit);
HWY_EXPORT(DotI8);
HWY_EXPORT(DotF32);
HWY_EXPORT(DotBf16);
HWY_EXPORT(DotF16);

void split_even_odd(const float* x, int64_t k, std::vector<float>& x_even, std::vector<float>& x_odd) {
  x_even.resize(size_t((k + 1) / 2));
  x_odd.resize(size_t(k / 2));
  for (int64_t i = 0; i < k; ++i) (i % 2 ? x_odd : x_even)[size_t(i / 2)] = x[i];
}

float dot_4bit(const uint8_t* packed, const float* absmax, const float* code, int blocksize, int64_t k,
               const float* x_even, const float* x_odd, TableRounding rounding) {
  return HWY_DYNAMIC_DISPATCH(Dot4bit)(packed, absmax, code, blocksize, k, x_even, x_odd, rounding);
}
int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotI8)(a, b, n); }
float dot_f32(const float* w, const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotF32)(w, x, n); }
float dot_bf16(const bf16* w, const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotBf16)(w, x, n); }
float dot_f16(const f16* w, const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotF16)(w, x, n); }

}  // namespace lowbit::ops::cpu
#endif  // HWY_ONCE
