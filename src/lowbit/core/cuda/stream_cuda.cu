#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "lowbit/core/cuda_check.h"
#include "lowbit/core/stream.h"

namespace lowbit {

CudaStream::CudaStream(int device, bool low_priority) : device_(device) {
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
  int least = 0, greatest = 0;
  LOWBIT_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaStream_t s = nullptr;
  LOWBIT_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamDefault, low_priority ? least : greatest));
  stream_ = s;
}

CudaEvent::CudaEvent(int device) {
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
  cudaEvent_t e = nullptr;
  LOWBIT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  event_ = e;
}

CudaEvent::~CudaEvent() {
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void CudaEvent::record(void* stream) {
  LOWBIT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), static_cast<cudaStream_t>(stream)));
  recorded_ = true;
}

void CudaEvent::wait(void* stream) const {
  if (recorded_)
    LOWBIT_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event_), 0));
}

CudaStream::~CudaStream() {
  if (!stream_) return;
  cudaSetDevice(device_);
  cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

CudaStream::CudaStream(CudaStream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)), device_(other.device_) {}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    CudaStream old(std::move(*this));
    stream_ = std::exchange(other.stream_, nullptr);
    device_ = other.device_;
  }
  return *this;
}

void CudaStream::synchronize() const {
  if (stream_) LOWBIT_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
}

CudaGraph::~CudaGraph() {
  abort_capture();
  reset();
}

void CudaGraph::begin_capture(void* stream) {
  reset();
  if (!stream) throw_error("CudaGraph: the legacy default stream cannot be captured; use a CudaStream");
  // Thread-local mode: other threads may still allocate and copy meanwhile.
  LOWBIT_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
  stream_ = stream;
}

void CudaGraph::end_capture() {
  if (!stream_) throw_error("CudaGraph: end_capture without begin_capture");
  cudaGraph_t graph = nullptr;
  const cudaError_t err = cudaStreamEndCapture(static_cast<cudaStream_t>(stream_), &graph);
  stream_ = nullptr;
  if (err != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw_error(std::string("CudaGraph: capturing the step failed (") + cudaGetErrorString(err) +
                "): something in it was synchronous or used another stream");
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) {
    cudaGetLastError();
    throw_error(std::string("CudaGraph: instantiating the captured step failed (") + cudaGetErrorString(inst) + ")");
  }
  exec_ = exec;
}

void CudaGraph::abort_capture() noexcept {
  if (!stream_) return;
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(static_cast<cudaStream_t>(stream_), &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // the capture's invalidation error, if any
  stream_ = nullptr;
}

void CudaGraph::launch(void* stream) const {
  if (!exec_) throw_error("CudaGraph: launch before a capture");
  LOWBIT_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream)));
}

void CudaGraph::reset() noexcept {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  exec_ = nullptr;
}

void copy_to_device_async(void* dst, const void* src, size_t bytes, void* stream) {
  LOWBIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)));
}

}  // namespace lowbit
