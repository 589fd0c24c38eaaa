#include "gptq/gptq_hessian.h"

#include <Eigen/Core>
#include <algorithm>

#include "common/parallel.h"

namespace qz::gptq {

void HessianAccumulator::reset(int nIn) {
    m_n = nIn;
    m_samples = 0;
    m_sum.assign(static_cast<size_t>(nIn) * nIn, 0.0f);
}

void HessianAccumulator::add(const float* x, int64_t nTokens, int threads) {
    if (m_n <= 0 || nTokens <= 0) return;
    using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
    Eigen::Map<const MatF> X(x, m_n, nTokens);  // column t = token t
    Eigen::Map<MatF> S(m_sum.data(), m_n, m_n);
    // Lower triangle only (block columns c0.., rows c0..n): blocks striped over threads for balance.
    const int bs = 64;
    const int nb = (m_n + bs - 1) / bs;
    const int T = std::max(1, std::min(threads > 0 ? threads : defaultThreadCount(), nb));
    parallelFor(
        static_cast<size_t>(T),
        [&](size_t b, size_t e, int) {
            for (size_t t = b; t < e; ++t)
                for (int blk = static_cast<int>(t); blk < nb; blk += T) {
                    const int c0 = blk * bs, n = std::min(bs, m_n - c0);
                    S.block(c0, c0, m_n - c0, n).noalias() +=
                        X.middleRows(c0, m_n - c0) * X.middleRows(c0, n).transpose();
                }
        },
        T, 1);
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
