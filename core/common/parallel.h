// Minimal data-parallel helpers on std::thread. Work is split into contiguous chunks, one per thread.
#pragma once

#include <cstddef>
#include <functional>

namespace qz {

// Number of worker threads to use (hardware concurrency, at least 1; QZ_THREADS overrides).
int defaultThreadCount();

// Calls fn(begin, end, threadIndex) over [0, n) split into at most `threads` chunks of at least
// `minChunk` items. Runs inline when one chunk suffices. An exception thrown by fn in any chunk (bad_alloc
// in a worker, say) is rethrown here once every chunk has finished; the first one thrown wins. A thread
// that cannot be started has its chunk run by the caller.
void parallelFor(size_t n, const std::function<void(size_t, size_t, int)>& fn, int threads = 0,
                 size_t minChunk = 1);

}  // namespace qz
