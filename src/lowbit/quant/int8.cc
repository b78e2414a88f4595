// LLM.int8 ops: validate, allocate, dispatch by device and dtype.
#include "lowbit/quant/int8.h"

#include <cmath>
#include <vector>

#include "lowbit/quant/kernels.h"
#include "quant/dispatch.h"

namespace lowbit::quant {
namespace {

// Columns holding any |a| >= threshold, in increasing order.
template <typename T>
std::vector<int32_t> outlier_columns(const T* a, int64_t rows, int64_t cols, float threshold) {
  std::vector<uint8_t> mask(size_t(cols), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (std::fabs(to_f32(a[r * cols + c])) >= threshold) mask[size_t(c)] = 1;
  std::vector<int32_t> out;
  for (int64_t c = 0; c < cols; ++c)
    if (mask[size_t(c)]) out.push_back(int32_t(c));
  return out;
}

}  // namespace

Int8Rows int8_vectorwise_quant(const Tensor& a, float threshold) {
  constexpr std::string_view op = "int8_vectorwise_quant";
  LOWBIT_CHECK(a.defined() && a.ndim() >= 1, "{}: expected a tensor with at least one dimension", op);
  LOWBIT_CHECK(!(threshold < 0.0f) && !std::isnan(threshold), "{}: threshold must be >= 0, got {}", op, threshold);
  const int64_t cols = a.dim(-1);
  const int64_t rows = cols == 0 ? 0 : a.numel() / cols;
  const Device device = a.device();
  Int8Rows out;
  out.codes = Tensor::empty(a.shape(), DType::I8, device);
  out.row_stats = Tensor::empty({rows}, DType::F32, device);
  std::vector<int32_t> columns;
  on_device(
      op, device,
      [&] {
        dispatch_float(a.dtype(), op, [&](auto tag) {
          using T = decltype(tag);
          cpu::int8_vectorwise_quant(a.data<T>(), rows, cols, threshold, out.codes.data<int8_t>(),
                                     out.row_stats.data<float>());
          if (threshold > 0.0f) columns = outlier_columns(a.data<T>(), rows, cols, threshold);
        });
        // The kernel zeroes the outliers themselves; bitsandbytes then clears
        // their whole columns when there is more than one row.
        if (rows > 1) {
          int8_t* codes = out.codes.data<int8_t>();
          for (int64_t r = 0; r < rows; ++r)
            for (int32_t c : columns) codes[r * cols + c] = 0;
        }
        out.outlier_cols = Tensor::from_vector(columns, {int64_t(columns.size())});
      },
      LOWBIT_QUANT_CUDA(
        dispatch_float(a.dtype(), op, [](auto) {});
        cuda::int8_vectorwise_quant(a.dtype(), a.raw_data(), rows, cols, threshold, out.codes.data<int8_t>(),
                                    out.row_stats.data<float>());
        if (threshold > 0.0f) {
          Tensor mask = Tensor::empty({cols}, DType::U8, device);
          cuda::int8_outlier_column_mask(a.dtype(), a.raw_data(), rows, cols, threshold, mask.data<uint8_t>());
          const Tensor host = mask.to(Device::cpu());
          for (int64_t c = 0; c < cols; ++c)
            if (host.data<uint8_t>()[c]) columns.push_back(int32_t(c));
        }
        out.outlier_cols = Tensor::from_vector(columns, {int64_t(columns.size())}).to(device);
        if (rows > 1 && !columns.empty())
          cuda::int8_zero_columns(out.codes.data<int8_t>(), rows, cols, out.outlier_cols.data<int32_t>(),
                                  int64_t(columns.size()));
      ));
  return out;
}

Tensor int8_vectorwise_dequant(const Tensor& codes, const Tensor& row_stats, DType out_dtype) {
  constexpr std::string_view op = "int8_vectorwise_dequant";
  LOWBIT_CHECK(codes.defined() && codes.dtype() == DType::I8 && codes.ndim() >= 1,
               "{}: expected i8 codes, got {}", op, codes.defined() ? codes.describe() : "undefined");
  const int64_t cols = codes.dim(-1);
  const int64_t rows = cols == 0 ? 0 : codes.numel() / cols;
  LOWBIT_CHECK(row_stats.defined() && row_stats.dtype() == DType::F32 && row_stats.numel() == rows,
               "{}: expected f32 row_stats [{}] for codes {}, got {}", op, rows, codes.describe(),
               row_stats.defined() ? row_stats.describe() : "undefined");
  LOWBIT_CHECK(row_stats.device() == codes.device(), "{}: codes on {} but row_stats on {}", op,
               codes.device().str(), row_stats.device().str());
  const Device device = codes.device();
  Tensor out = Tensor::empty(codes.shape(), out_dtype, device);
  on_device(
      op, device,
      [&] {
        dispatch_float(out_dtype, op, [&](auto tag) {
          using T = decltype(tag);
          cpu::int8_vectorwise_dequant(codes.data<int8_t>(), row_stats.data<float>(), rows, cols, out.data<T>());
        });
      },
      LOWBIT_QUANT_CUDA(
        dispatch_float(out_dtype, op, [](auto) {});
        cuda::int8_vectorwise_dequant(out_dtype, codes.data<int8_t>(), row_stats.data<float>(), rows, cols,
                                      out.raw_data());
      ));
  return out;
}

Int8RowwiseWeight quantize_int8_rowwise(const Tensor& weight) {
  LOWBIT_CHECK(weight.defined() && weight.ndim() == 2, "quantize_int8_rowwise: expected a 2-D weight, got {}",
               weight.defined() ? weight.describe() : "undefined");
  Int8Rows rows = int8_vectorwise_quant(weight, 0.0f);
  return {rows.codes, rows.row_stats};
}

}  // namespace lowbit::quant
