// run_tasks (see pomaidb/task_pool.h).  Built for the baseline ISA.
#include "pomaidb/task_pool.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace pomai {
namespace {

// How long a helper polls for more work after a task before it sleeps: longer than the
// Python between two searches of one caller (~0.15 ms), short enough that a helper idles a
// core for at most that long after the last search.
constexpr auto kSpinMicros = std::chrono::microseconds(300);
constexpr std::size_t kMaxHelpers = 15;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

struct Job {
  const std::function<void(std::size_t)>* task;  // valid until every task has ended
  std::size_t n;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> ended{0};
  std::mutex error_mutex;
  std::exception_ptr error;
};

// Claims and runs the job's tasks until none is left.  A helper that takes a job after its
// tasks were all claimed never touches `task`, which may be gone by then.
void work(Job& job) {
  for (std::size_t i = job.next.fetch_add(1); i < job.n; i = job.next.fetch_add(1)) {
    try {
      (*job.task)(i);
    } catch (...) {
      const std::lock_guard<std::mutex> hold(job.error_mutex);
      if (!job.error) job.error = std::current_exception();
    }
    if (job.ended.fetch_add(1) + 1 == job.n) job.ended.notify_all();
  }
}

class Pool {
 public:
  explicit Pool(pid_t pid) : pid_(pid) {}
  pid_t pid() const { return pid_; }
  std::size_t helpers() const { return threads_.load(); }

  // Starts the helpers, counting each once it runs (other threads may already ask how many
  // there are). A machine that refuses more threads gets fewer helpers, not an error: a
  // caller runs whatever no helper takes.
  void start() {
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t wanted = std::min(cores - 1, kMaxHelpers);
    for (std::size_t i = 0; i < wanted; ++i) {
      try {
        std::thread([this] { serve(); }).detach();
      } catch (const std::system_error&) {
        return;
      }
      threads_.fetch_add(1);
    }
  }

  // Offers the job to `count` helpers: each idle one takes an offer.
  void offer(const std::shared_ptr<Job>& job, std::size_t count) {
    {
      const std::lock_guard<std::mutex> hold(mutex_);
      for (std::size_t i = 0; i < count; ++i) offers_.push_back(job);
      pending_.fetch_add(count);
    }
    if (sleeping_.load() > 0) wake_.notify_all();
  }

 private:
  [[noreturn]] void serve() {
    for (;;) work(*take());
  }

  std::shared_ptr<Job> take() {
    const auto until = std::chrono::steady_clock::now() + kSpinMicros;
    while (pending_.load(std::memory_order_relaxed) == 0 &&
           std::chrono::steady_clock::now() < until) {
      relax();
    }
    std::unique_lock<std::mutex> hold(mutex_);
    sleeping_.fetch_add(1);
    wake_.wait(hold, [this] { return !offers_.empty(); });
    sleeping_.fetch_sub(1);
    std::shared_ptr<Job> job = std::move(offers_.front());
    offers_.pop_front();
    pending_.fetch_sub(1);
    return job;
  }

  pid_t pid_;
  std::atomic<std::size_t> threads_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> offers_;
  std::atomic<std::size_t> pending_{0};
  std::atomic<std::size_t> sleeping_{0};
};

// This process's pool.  A forked child has none of its parent's threads (and maybe a mutex
// some parent thread held), so it leaves the parent's pool alone and starts its own.  Pools
// are never freed: a helper may still be polling one at exit.
Pool& pool() {
  static std::atomic<Pool*> current{nullptr};
  const pid_t pid = getpid();
  Pool* seen = current.load();
  while (seen == nullptr || seen->pid() != pid) {
    auto* fresh = new Pool(pid);
    if (current.compare_exchange_strong(seen, fresh)) {
      fresh->start();
      return *fresh;
    }
    delete fresh;  // another thread installed one first: `seen` now holds it
  }
  return *seen;
}

}  // namespace

std::size_t pool_helpers() { return pool().helpers(); }

void run_tasks(std::size_t n, std::size_t helpers, const std::function<void(std::size_t)>& task) {
  if (n == 0) return;
  Pool* helping = nullptr;
  if (helpers > 0 && n > 1) helping = &pool();
  const std::size_t offered = helping ? std::min({helpers, helping->helpers(), n - 1}) : 0;
  auto job = std::make_shared<Job>();
  job->task = &task;
  job->n = n;
  if (offered > 0) helping->offer(job, offered);
  work(*job);
  for (std::size_t ended = job->ended.load(); ended < n; ended = job->ended.load()) {
    job->ended.wait(ended);
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace pomai
