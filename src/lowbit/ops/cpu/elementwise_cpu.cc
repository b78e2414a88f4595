// CPU bodies of RMSNorm and the element-wise ops. Every op loads T as f32,
// computes in f32 and rounds on store, like one PyTorch op in dtype T.
#include <cmath>

#include "lowbit/core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {

using detail::dispatch_float;
using detail::round_to;

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  const int64_t rows = x.dim(0), dim = x.dim(1);
  const Tensor w = weight.dtype() == DType::F32 ? weight : weight.cast(DType::F32);
  const float* wp = w.data<float>();
  dispatch_float("rms_norm", x.dtype(), [&]<typename T>(T) {
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    parallel_for(0, size_t(rows), 16, [&](size_t lo, size_t hi) {
      for (size_t r = lo; r < hi; ++r) {
        const T* xr = xp + r * dim;
        T* orow = op + r * dim;
        float sum = 0.0f;
        for (int64_t i = 0; i < dim; ++i) {
          const float v = detail::load(xr[i]);
          sum += v * v;
        }
        const float inv = 1.0f / std::sqrt(sum / float(dim) + eps);
        for (int64_t i = 0; i < dim; ++i)
          orow[i] = detail::store<T>(wp[i] * round_to<T>(detail::load(xr[i]) * inv));
      }
    });
  });
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  const size_t n = size_t(a.numel());
  dispatch_float("add", a.dtype(), [&]<typename T>(T) {
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* op = out.data<T>();
    parallel_for(0, n, 1 << 14, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) op[i] = detail::store<T>(detail::load(ap[i]) + detail::load(bp[i]));
    });
  });
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  const size_t n = size_t(gate.numel());
  dispatch_float("silu_mul", gate.dtype(), [&]<typename T>(T) {
    const T* gp = gate.data<T>();
    const T* up_ = up.data<T>();
    T* op = out.data<T>();
    parallel_for(0, n, 4096, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) {
        const float g = detail::load(gp[i]);
        const float act = round_to<T>(g / (1.0f + std::exp(-g)));
        op[i] = detail::store<T>(act * detail::load(up_[i]));
      }
    });
  });
}

void add_rms_norm(Tensor& x, const Tensor& residual, const Tensor& weight, float eps, Tensor& out) {
  add(x, residual, x);
  rms_norm(x, weight, eps, out);
}

void swiglu(const Tensor& gate_up, Tensor& out) {
  const int64_t rows = gate_up.dim(0), n = out.dim(1);
  dispatch_float("swiglu", gate_up.dtype(), [&]<typename T>(T) {
    const T* in = gate_up.data<T>();
    T* op = out.data<T>();
    parallel_for(0, size_t(rows), std::max<size_t>(1, size_t(4096 / std::max<int64_t>(n, 1))),
                 [&](size_t lo, size_t hi) {
                   for (size_t r = lo; r < hi; ++r)
                     for (int64_t i = 0; i < n; ++i) {
                       const float g = detail::load(in[r * 2 * n + i]);
                       const float act = round_to<T>(g / (1.0f + std::exp(-g)));
                       op[r * n + i] = detail::store<T>(act * detail::load(in[r * 2 * n + n + i]));
                     }
                 });
  });
}

void embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  const int64_t n = ids.dim(0), vocab = table.dim(0), dim = table.dim(1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids.dtype() == DType::I64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
    if (id < 0 || id >= vocab) fail("ops::embedding: token id {} is outside the vocabulary [0, {})", id, vocab);
    dispatch_float("embedding", table.dtype(), [&]<typename S>(S) {
      dispatch_float("embedding", out.dtype(), [&]<typename D>(D) {
        const S* src = table.data<S>() + id * dim;
        D* dst = out.data<D>() + i * dim;
        for (int64_t j = 0; j < dim; ++j) dst[j] = detail::store<D>(detail::load(src[j]));
      });
    });
  }
}

void softmax(const Tensor& x, Tensor& out, bool log) {
  const int64_t cols = x.dim(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  dispatch_float("softmax", x.dtype(), [&]<typename T>(T) {
    const T* xp = x.data<T>();
    float* op = out.data<float>();
    parallel_for(0, size_t(rows), 4, [&](size_t lo, size_t hi) {
      for (size_t r = lo; r < hi; ++r) {
        const T* xr = xp + r * cols;
        float* orow = op + r * cols;
        float mx = -INFINITY;
        for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, detail::load(xr[i]));
        double sum = 0.0;
        for (int64_t i = 0; i < cols; ++i) sum += std::exp(double(detail::load(xr[i]) - mx));
        if (log) {
          const float lse = float(std::log(sum));
          for (int64_t i = 0; i < cols; ++i) orow[i] = (detail::load(xr[i]) - mx) - lse;
        } else {
          const double inv = 1.0 / sum;
          for (int64_t i = 0; i < cols; ++i) orow[i] = float(std::exp(double(detail::load(xr[i]) - mx)) * inv);
        }
      }
    });
  });
}

}  // namespace lowbit::ops::cpu
