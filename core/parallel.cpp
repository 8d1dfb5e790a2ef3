#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define HS_NO_THREADS 1
#endif

namespace hs {

namespace {

constexpr int kMaxThreads = 16;

// True on a thread while it runs a part: a nested parallel_for runs inline.
thread_local bool in_part = false;

// The pool: workers wait for a job (a generation number changes), take parts
// from a shared counter as the caller does, and report when they are done.
class Pool {
 public:
  int size() const { return static_cast<int>(workers_.size()); }

  void resize(int n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    // A worker waits for the generation after the one it was started in (a
    // job may begin before the thread first runs).
    for (int i = 0; i < n; ++i) workers_.emplace_back([this, g = generation_] { loop(g); });
  }

  // Runs parts [0, parts) of body on the caller and every worker.
  void run(int parts, const std::function<void(int)>& part) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(parts));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &part;
      errors_ = &errors;
      parts_ = parts;
      next_ = 0;
      busy_ = size();
      ++generation_;
    }
    wake_.notify_all();
    take_parts();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return busy_ == 0; });
      job_ = nullptr;
      errors_ = nullptr;
    }
    for (std::exception_ptr& e : errors)
      if (e) std::rethrow_exception(e);
  }

  std::mutex& caller_mutex() { return caller_; }

 private:
  void loop(unsigned long long seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
      }
      take_parts();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--busy_ == 0) done_.notify_one();
      }
    }
  }

  void take_parts() {
    for (;;) {
      int p;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (next_ >= parts_) return;
        p = next_++;
      }
      in_part = true;
      try {
        (*job_)(p);
      } catch (...) {
        (*errors_)[static_cast<std::size_t>(p)] = std::current_exception();
      }
      in_part = false;
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::mutex caller_;  // one job at a time
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  std::vector<std::exception_ptr>* errors_ = nullptr;
  int parts_ = 0, next_ = 0, busy_ = 0;
  unsigned long long generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static destructors' order
  return *p;
}

std::atomic<int> count{1};

}  // namespace

int max_thread_count() {
#ifdef HS_NO_THREADS
  return 1;
#else
  const unsigned hw = std::thread::hardware_concurrency();
  return std::clamp(static_cast<int>(hw), 1, kMaxThreads);
#endif
}

int set_thread_count(int n) {
  n = std::clamp(n, 1, max_thread_count());
  std::lock_guard<std::mutex> lock(pool().caller_mutex());
  if (n != count) {
    pool().resize(n - 1);
    count = n;
  }
  return count.load();
}

int thread_count() { return count.load(); }

void parallel_for(std::ptrdiff_t n, const std::function<void(std::ptrdiff_t, std::ptrdiff_t)>& body,
                  std::ptrdiff_t min_items) {
  if (n <= 0) return;
  const std::ptrdiff_t most = std::max<std::ptrdiff_t>(1, n / std::max<std::ptrdiff_t>(1, min_items));
  const int parts = static_cast<int>(std::min<std::ptrdiff_t>(count.load(), most));
  if (parts <= 1 || in_part) return body(0, n);
  std::unique_lock<std::mutex> lock(pool().caller_mutex(), std::try_to_lock);
  if (!lock.owns_lock()) return body(0, n);  // another thread's job has the pool
  pool().run(parts, [&](int p) { body(n * p / parts, n * (p + 1) / parts); });
}

}  // namespace hs
