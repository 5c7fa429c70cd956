// Independent tasks of one call (the segments of a read-plan search) run on the calling thread
// and on helper threads of one process-wide pool, with the GIL released throughout.
//
// Why a pool here and not Python threads: a search of four 25k-row segments spends ~0.1 ms in
// each kernel call, and handing a call to a Python thread (a future, a wake-up, the GIL back)
// cost about as much as it saved (fanout.py).  Here a helper that just finished a task keeps
// polling for the next one a short while (kSpinMicros) before it sleeps, so back-to-back
// searches reach it without a wake-up, and the caller never waits for a helper that is busy:
// it runs every task nobody has taken.
#pragma once

#include <cstddef>
#include <functional>

namespace pomai {

// Runs task(i) for every i in [0, n), on the calling thread and on up to `helpers` pool
// threads (fewer where the machine has fewer cores or its helpers are busy), and returns when
// every task has ended.  Rethrows the first exception a task threw, after every task ended.
// Safe after fork(): a child process starts a pool of its own.
void run_tasks(std::size_t n, std::size_t helpers, const std::function<void(std::size_t)>& task);

// Helper threads of the pool: one fewer than the machine's cores (none on one core).
std::size_t pool_helpers();

}  // namespace pomai
