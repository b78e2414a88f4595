// CUDA streams and graphs, without CUDA headers.
//
// Ops queue their GPU work on the calling thread's current stream (nullptr:
// the legacy default stream). A model sets its own stream for a forward pass
// with CudaStreamScope; a decoding step can then be captured once into a
// CudaGraph and replayed with one launch instead of hundreds.
#pragma once

#include <cstddef>

namespace lowbit {

// The stream (a cudaStream_t) this thread's ops use; nullptr by default.
void* current_cuda_stream();

// Makes `stream` the current one until the scope ends.
class CudaStreamScope {
 public:
  explicit CudaStreamScope(void* stream);
  ~CudaStreamScope();
  CudaStreamScope(const CudaStreamScope&) = delete;
  CudaStreamScope& operator=(const CudaStreamScope&) = delete;

 private:
  void* previous_;
};

// An owned stream on one device. It is a blocking stream: work on the legacy
// default stream (plain copies such as Tensor::to) waits for it and it waits
// for that work, so callers outside the scope see finished results.
class CudaStream {
 public:
  CudaStream() = default;
  // low_priority: the GPU schedules other streams' pending blocks first
  // (background work that fills what they leave idle).
  explicit CudaStream(int device, bool low_priority = false);
  ~CudaStream();
  CudaStream(CudaStream&& other) noexcept;
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  void* get() const { return stream_; }
  void synchronize() const;

 private:
  void* stream_ = nullptr;
  int device_ = 0;
};

// Work captured from a stream and replayed as one graph launch. Everything
// captured must be asynchronous and go to the captured stream; pointers and
// kernel arguments are frozen at capture time, so what changes from replay to
// replay must be read from device memory.
class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Starts capturing `stream` (this thread's calls only); end_capture
  // instantiates the graph. A failed capture leaves the graph empty and throws.
  void begin_capture(void* stream);
  void end_capture();
  // Abandons a capture in progress (after an exception inside it).
  void abort_capture() noexcept;
  void launch(void* stream) const;
  bool ready() const { return exec_ != nullptr; }
  void reset() noexcept;

 private:
  void* stream_ = nullptr;  // while capturing
  void* exec_ = nullptr;    // cudaGraphExec_t
};

// A point in a stream's work that another stream can wait for.
class CudaEvent {
 public:
  CudaEvent() = default;
  explicit CudaEvent(int device);
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  void record(void* stream);
  // Work queued on `stream` after this call starts once the recorded point is
  // reached (nothing to wait for before the first record).
  void wait(void* stream) const;

 private:
  void* event_ = nullptr;
  bool recorded_ = false;
};

// Asynchronous host -> device copy on `stream` (small per-step values; the
// host buffer may be reused once this returns).
void copy_to_device_async(void* dst, const void* src, size_t bytes, void* stream);

}  // namespace lowbit
