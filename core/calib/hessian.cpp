#include "calib/hessian.h"

#include <algorithm>
#include <atomic>
#include <mutex>

#include "common/parallel.h"
#include "infer/matmul.h"

#if QZ_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace qz::calib {

namespace {

// The lower triangle of Σ x·xᵀ is cut into a fixed grid of kTile-wide blocks of features (with OpenBLAS:
// block columns, each its diagonal tile plus everything below it; without: kTile × kTile tiles), and the
// tokens of one add() into fixed blocks of kTokenBlock. Each block is computed by one thread from start to
// end, and nothing is reduced across blocks, so which thread computes a block (and how many threads there
// are) cannot change a single bit. Only the grid matters, and it depends on nIn alone.
constexpr int kTile = 256;
constexpr int64_t kTokenBlock = int64_t{1} << 20; // keeps BLAS's int arguments far from overflow

struct Tile {
    int row0, col0; // first feature of the tile's rows / columns (row0 >= col0)
};

#if !QZ_HAVE_OPENBLAS
std::vector<Tile> lowerTiles(int n) {
    std::vector<Tile> tiles;
    for (int c0 = 0; c0 < n; c0 += kTile)
        for (int r0 = c0; r0 < n; r0 += kTile)
            tiles.push_back({r0, c0});
    return tiles;
}
#endif

// Runs fn(tile) for every tile on up to `threads` threads, tiles handed out one at a time (the order of
// hand-out only balances the load; each tile's result is the same whoever computes it).
template <typename Fn> void forEachTile(const std::vector<Tile>& tiles, int threads, Fn&& fn) {
    const int nt = std::max(1, std::min<int>(threads, static_cast<int>(tiles.size())));
    std::atomic<size_t> next{0};
    parallelFor(
        static_cast<size_t>(nt),
        [&](size_t, size_t, int) {
            for (size_t i = next.fetch_add(1); i < tiles.size(); i = next.fetch_add(1))
                fn(tiles[i]);
        },
        nt, 1);
}

#if QZ_HAVE_OPENBLAS
// OpenBLAS's thread count is process-wide. Each block is single-threaded calls from our own threads:
// Debian's OpenBLAS (the pthread variant, 0.3.x) runs a call with one thread in the calling thread and
// takes its work buffers under a lock, so concurrent calls from several of our threads are safe. Only
// we use OpenBLAS in this process, so it is simply kept at one thread once set.
void pinOpenBlasToOneThread() {
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}
#endif

} // namespace

void useOpenBlasSingleThreaded() {
#if QZ_HAVE_OPENBLAS
    pinOpenBlasToOneThread();
#endif
}

void HessianAccumulator::reset(int nIn) {
    m_n = nIn;
    m_samples = 0;
    m_sum.assign(static_cast<size_t>(std::max(0, nIn)) * std::max(0, nIn), 0.0f);
}

void HessianAccumulator::add(const float* x, int64_t nTokens, int threads) {
    if (m_n <= 0 || nTokens <= 0) return;
    const int nThreads = threads > 0 ? threads : defaultThreadCount();
    const int n = m_n;
#if QZ_HAVE_OPENBLAS
    std::vector<Tile> panels;
    for (int c0 = 0; c0 < n; c0 += kTile) panels.push_back({c0, c0});
    pinOpenBlasToOneThread();
    // x row-major [nTokens][nIn] is column-major [nIn × nTokens] (leading dimension nIn); m_sum is
    // column-major [nIn × nIn].
    for (int64_t t0 = 0; t0 < nTokens; t0 += kTokenBlock) {
        const int T = static_cast<int>(std::min(kTokenBlock, nTokens - t0));
        const float* xb = x + static_cast<size_t>(t0) * n;
        // One block column of kTile features per task: SSYRK on its diagonal tile, one SGEMM for all the
        // rows below it (bigger calls than one per tile, the same fixed decomposition).
        forEachTile(panels, nThreads, [&](const Tile& t) {
            const int w = std::min(kTile, n - t.col0), below = n - t.col0 - w;
            float* c = m_sum.data() + static_cast<size_t>(t.col0) * n + t.col0;
            cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, w, T, 1.0f, xb + t.col0, n, 1.0f, c, n);
            if (below > 0)
                cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, below, w, T, 1.0f, xb + t.col0 + w, n,
                            xb + t.col0, n, 1.0f, c + w, n);
        });
    }
    return;
#else
    const auto tiles = lowerTiles(n);
    // Feature-major copy of one token block: row i = feature i over the tokens, so that every entry of a
    // tile is one contiguous dot product (infer/matmul.h dotProducts: the engine's AVX2+FMA kernel where
    // the CPU has it — the library is built for baseline x86-64, where Eigen's GEMM would only use SSE).
    const int64_t blockTokens = std::min(kTokenBlock, nTokens);
    std::vector<float> xt(static_cast<size_t>(n) * static_cast<size_t>(blockTokens));
    for (int64_t tb = 0; tb < nTokens; tb += kTokenBlock) {
        const int64_t T = std::min(kTokenBlock, nTokens - tb);
        const float* xb = x + static_cast<size_t>(tb) * n;
        for (int64_t t0 = 0; t0 < T;
             t0 += 32) // in 32 × 32 tiles, so that neither side strides through memory
            for (int i0 = 0; i0 < n; i0 += 32)
                for (int64_t t = t0; t < std::min<int64_t>(T, t0 + 32); ++t)
                    for (int i = i0; i < std::min(n, i0 + 32); ++i)
                        xt[static_cast<size_t>(i) * T + t] = xb[static_cast<size_t>(t) * n + i];
        forEachTile(tiles, nThreads, [&](const Tile& t) {
            const int rows = std::min(kTile, n - t.row0), cols = std::min(kTile, n - t.col0);
            std::vector<float> tmp(static_cast<size_t>(rows) * cols);
            // tmp[r + j·rows] = <feature row0 + r, feature col0 + j>
            dotProducts(xt.data() + static_cast<size_t>(t.row0) * T, T, rows,
                        xt.data() + static_cast<size_t>(t.col0) * T, T, cols, T, tmp.data(), rows);
            for (int j = 0; j < cols; ++j) {
                float* col = m_sum.data() + static_cast<size_t>(t.col0 + j) * n + t.row0;
                const float* src = tmp.data() + static_cast<size_t>(j) * rows;
                for (int r = t.row0 == t.col0 ? j : 0; r < rows; ++r)
                    col[r] += src[r];
            }
        });
    }
#endif
}

std::vector<float> HessianAccumulator::finish() const {
    std::vector<float> h(m_sum.size());
    const float f = m_samples > 0 ? static_cast<float>(2.0 / static_cast<double>(m_samples)) : 0.0f;
    for (int i = 0; i < m_n; ++i)
        for (int j = 0; j < m_n; ++j) { // lower triangle holds (row >= col)
            const size_t src = i >= j ? static_cast<size_t>(j) * m_n + i : static_cast<size_t>(i) * m_n + j;
            h[static_cast<size_t>(i) * m_n + j] = m_sum[src] * f;
        }
    return h;
}

std::vector<float> HessianAccumulator::take() {
    // Column-major lower triangle -> full symmetric, each entry scaled as finish() scales it; symmetric, so
    // row-major and column-major are the same storage.
    const float f = m_samples > 0 ? static_cast<float>(2.0 / static_cast<double>(m_samples)) : 0.0f;
    const size_t n = static_cast<size_t>(m_n);
    for (size_t j = 0; j < n; ++j)
        for (size_t i = j; i < n; ++i) {
            const float v = m_sum[j * n + i] * f;
            m_sum[j * n + i] = v;
            m_sum[i * n + j] = v;
        }
    std::vector<float> h = std::move(m_sum);
    m_sum.clear();
    m_n = 0;
    m_samples = 0;
    return h;
}

void HessianObserver::track(const std::string& weightName, int nIn) { m_acc[weightName].reset(nIn); }

LinearObserver HessianObserver::observer() {
    return [this](const std::string& name, const float* x, int64_t nTokens, int64_t nIn) {
        auto it = m_acc.find(name);
        if (it == m_acc.end() || it->second.dim() != nIn) return;
        it->second.add(x, nTokens, m_threads);
    };
}

HessianAccumulator* HessianObserver::find(const std::string& weightName) {
    auto it = m_acc.find(weightName);
    return it == m_acc.end() ? nullptr : &it->second;
}

void HessianObserver::countSample(int64_t n) {
    for (auto& [name, a] : m_acc) a.countSample(n);
}

} // namespace qz::calib
