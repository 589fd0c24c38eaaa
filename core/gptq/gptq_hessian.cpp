#include "gptq/gptq_hessian.h"

#include <algorithm>

#include "common/parallel.h"
#include "infer/matmul.h"

#if QZ_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace qz::gptq {

void HessianAccumulator::reset(int nIn) {
    m_n = nIn;
    m_samples = 0;
    m_sum.assign(static_cast<size_t>(nIn) * nIn, 0.0f);
}

void HessianAccumulator::add(const float* x, int64_t nTokens, int threads) {
    if (m_n <= 0 || nTokens <= 0) return;
#if QZ_HAVE_OPENBLAS
    // x row-major [nTokens][nIn] is column-major [nIn × nTokens]: the lower triangle of Σ x·xᵀ is one SSYRK.
    openblas_set_num_threads(std::max(1, threads > 0 ? threads : defaultThreadCount()));
    cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, m_n, static_cast<int>(nTokens), 1.0f, x, m_n, 1.0f,
                m_sum.data(), m_n);
    return;
#endif
    // Feature-major copy: row i = feature i over the tokens, so that every entry of the lower triangle is
    // one contiguous dot product (infer/matmul.h dotProducts: the engine's AVX2+FMA kernel where the CPU
    // has it — the library is built for baseline x86-64, where Eigen's GEMM would only use SSE).
    const int64_t T = nTokens;
    std::vector<float> xt(static_cast<size_t>(m_n) * T);
    for (int64_t t0 = 0; t0 < T; t0 += 32)  // in tiles, so that neither side strides through memory
        for (int i0 = 0; i0 < m_n; i0 += 32)
            for (int64_t t = t0; t < std::min<int64_t>(T, t0 + 32); ++t)
                for (int i = i0; i < std::min(m_n, i0 + 32); ++i)
                    xt[static_cast<size_t>(i) * T + t] = x[static_cast<size_t>(t) * m_n + i];
    // Lower triangle in block columns of bs (rows c0..n of columns c0..c0+bs), striped over threads.
    const int bs = 64;
    const int nb = (m_n + bs - 1) / bs;
    const int nt = std::max(1, std::min(threads > 0 ? threads : defaultThreadCount(), nb));
    parallelFor(
        static_cast<size_t>(nt),
        [&](size_t b, size_t e, int) {
            std::vector<float> tmp;
            for (size_t t = b; t < e; ++t)
                for (int blk = static_cast<int>(t); blk < nb; blk += nt) {
                    const int c0 = blk * bs, n = std::min(bs, m_n - c0), rows = m_n - c0;
                    tmp.resize(static_cast<size_t>(rows) * n);
                    // tmp[r + j·rows] = <feature c0 + r, feature c0 + j>
                    dotProducts(xt.data() + static_cast<size_t>(c0) * T, T, rows, xt.data() + static_cast<size_t>(c0) * T,
                                T, n, T, tmp.data(), rows);
                    for (int j = 0; j < n; ++j) {
                        float* col = m_sum.data() + static_cast<size_t>(c0 + j) * m_n + c0;
                        const float* src = tmp.data() + static_cast<size_t>(j) * rows;
                        for (int r = j; r < rows; ++r) col[r] += src[r];
                    }
                }
        },
        nt, 1);
}

std::vector<float> HessianAccumulator::finish() const {
    std::vector<float> h(m_sum.size());
    const float f = m_samples > 0 ? static_cast<float>(2.0 / static_cast<double>(m_samples)) : 0.0f;
    for (int i = 0; i < m_n; ++i)
        for (int j = 0; j < m_n; ++j) {  // lower triangle holds (row >= col)
            const size_t src = i >= j ? static_cast<size_t>(j) * m_n + i : static_cast<size_t>(i) * m_n + j;
            h[static_cast<size_t>(i) * m_n + j] = m_sum[src] * f;
        }
    return h;
}

}  // namespace qz::gptq
