#include "lowbit/core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lowbit {
namespace {

// A fixed set of workers that each take chunk indices from a shared counter.
// One job runs at a time; nested calls from a worker run inline.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop(); }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    stop();
    stopping_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void run(size_t chunks, const std::function<void(size_t)>& fn) {
    std::lock_guard job_lock(job_mutex_);
    {
      std::lock_guard lk(mutex_);
      job_ = &fn;
      chunks_ = chunks;
      next_.store(0);
      pending_ = chunks;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    // The caller works too; while it does, nested parallel_for calls run inline.
    in_worker = true;
    work();
    in_worker = false;
    // Wait for the chunks and for every worker to leave work(): a worker still
    // inside it would otherwise take indices from the next job's counter.
    std::unique_lock lk(mutex_);
    done_cv_.wait(lk, [&] { return pending_ == 0 && active_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  static thread_local bool in_worker;

 private:
  void work() {
    for (;;) {
      const size_t i = next_.fetch_add(1);
      if (i >= chunks_) return;
      try {
        (*job_)(i);
      } catch (...) {
        std::lock_guard lk(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard lk(mutex_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  void worker_loop() {
    in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lk(mutex_);
        cv_.wait(lk, [&] { return stopping_ || (generation_ != seen && job_ != nullptr); });
        if (stopping_) return;
        seen = generation_;
        ++active_;
      }
      work();
      std::lock_guard lk(mutex_);
      if (--active_ == 0) done_cv_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard lk(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t chunks_ = 0;
  std::atomic<size_t> next_{0};
  size_t pending_ = 0;
  int active_ = 0;  // workers inside work() for the current job
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

thread_local bool ThreadPool::in_worker = false;

int default_threads() {
  if (const char* env = std::getenv("LOWBIT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::mutex g_pool_mutex;
ThreadPool& pool() {
  static ThreadPool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  std::lock_guard lk(g_pool_mutex);
  pool().resize(std::max(1, n));
}

void parallel_for(size_t begin, size_t end, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (end <= begin) return;
  const size_t n = end - begin;
  grain = std::max<size_t>(grain, 1);
  const int threads = ThreadPool::in_worker ? 1 : num_threads();
  if (threads <= 1 || n <= grain) {
    fn(begin, end);
    return;
  }
  // A few chunks per thread balance uneven work without much overhead.
  const size_t max_chunks = size_t(threads) * 4;
  const size_t chunks = std::min(max_chunks, (n + grain - 1) / grain);
  const size_t step = (n + chunks - 1) / chunks;
  pool().run(chunks, [&](size_t c) {
    const size_t lo = begin + c * step;
    const size_t hi = std::min(end, lo + step);
    if (lo < hi) fn(lo, hi);
  });
}

}  // namespace lowbit
