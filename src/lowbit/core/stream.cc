#include "lowbit/core/stream.h"

#include "lowbit/core/error.h"

namespace lowbit {
namespace {
thread_local void* current_stream = nullptr;
}  // namespace

void* current_cuda_stream() { return current_stream; }

CudaStreamScope::CudaStreamScope(void* stream) : previous_(current_stream) { current_stream = stream; }
CudaStreamScope::~CudaStreamScope() { current_stream = previous_; }

#ifndef LOWBIT_WITH_CUDA
// Without CUDA no stream or graph can exist: making one says so.
namespace {
[[noreturn]] void no_cuda() { fail("this lowbit was built without CUDA (configure with nvcc present)"); }
}  // namespace
CudaStream::CudaStream(int, bool) { no_cuda(); }
CudaEvent::CudaEvent(int) { no_cuda(); }
CudaEvent::~CudaEvent() = default;
void CudaEvent::record(void*) { no_cuda(); }
void CudaEvent::wait(void*) const {}
CudaStream::~CudaStream() = default;
CudaStream::CudaStream(CudaStream&&) noexcept = default;
CudaStream& CudaStream::operator=(CudaStream&&) noexcept = default;
void CudaStream::synchronize() const {}
CudaGraph::~CudaGraph() = default;
void CudaGraph::begin_capture(void*) { no_cuda(); }
void CudaGraph::end_capture() { no_cuda(); }
void CudaGraph::abort_capture() noexcept {}
void CudaGraph::launch(void*) const { no_cuda(); }
void CudaGraph::reset() noexcept {}
void copy_to_device_async(void*, const void*, size_t, void*) { no_cuda(); }
#endif

}  // namespace lowbit
