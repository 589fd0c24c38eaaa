#include "gptq/gptq_quant.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "common/fp16.h"
#include "common/parallel.h"

namespace qz::gptq {

namespace {
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;   // column-major
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;

int groupCount(int cols, int groupSize) { return groupSize <= 0 ? 1 : (cols + groupSize - 1) / groupSize; }
}  // namespace

Status validateConfig(const QuantConfig& c) {
    if (c.bits != 2 && c.bits != 3 && c.bits != 4 && c.bits != 8)
        return makeError("GPTQ: bits must be 2, 3, 4 or 8 (got " + std::to_string(c.bits) + ")");
    if (c.groupSize != -1 && c.groupSize <= 0)
        return makeError("GPTQ: group size must be -1 or positive (got " + std::to_string(c.groupSize) + ")");
    if (!(c.dampPercent > 0 && c.dampPercent < 1))
        return makeError("GPTQ: damp_percent must be in (0, 1)");
    if (c.blockSize <= 0) return makeError("GPTQ: block size must be positive");
    if (c.staticGroups && c.groupSize == -1) return makeError("GPTQ: static groups need a group size");
    return okStatus();
}

Status checkLayerShape(const QuantConfig& c, int64_t out, int64_t in) {
    if (out <= 0 || in <= 0) return makeError("GPTQ: empty layer");
    if (in % 32 != 0) return makeError("GPTQ: input features (" + std::to_string(in) + ") must be a multiple of 32");
    const int64_t per = c.bits == 3 ? 32 : 32 / c.bits;
    if (out % per != 0)
        return makeError("GPTQ: output features (" + std::to_string(out) + ") must be a multiple of " +
                         std::to_string(per) + " for " + std::to_string(c.bits) + " bits");
    if (in > (1 << 20) || out > (1 << 20)) return makeError("GPTQ: layer too large");
    return okStatus();
}

void findParams(const float* x, int n, int stride, const QuantConfig& c, float& scale, float& zero) {
    float xmin = 0.0f, xmax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float v = x[static_cast<int64_t>(i) * stride];
        xmin = std::min(xmin, v);
        xmax = std::max(xmax, v);
    }
    const float maxq = static_cast<float>(c.maxq());
    if (c.sym) {
        xmax = std::max(std::fabs(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) {
        xmin = -1;
        xmax = 1;
    }
    scale = (xmax - xmin) / maxq;
    if (c.sym) {
        zero = (maxq + 1) / 2;
    } else {
        zero = std::nearbyint(-xmin / scale);
        if (zero < 1) {  // v1 checkpoints store zero − 1: keep zero >= 1 (see header)
            zero = 1;
            scale = xmax / (maxq - 1);
        }
    }
}

namespace {

// Code of a value on the grid (what quantizeValue dequantizes).
inline uint8_t codeOf(float x, float scale, float zero, int maxq) {
    float q = std::nearbyint(x / scale) + zero;
    q = q < 0 ? 0 : (q > static_cast<float>(maxq) ? static_cast<float>(maxq) : q);
    return static_cast<uint8_t>(q);
}

// Upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), H damped. False if H is not positive definite.
// Without forming H⁻¹: the Cholesky factor L of the reversed matrix J·H·J (J = reversal) gives
// H = Ũ·Ũᵀ with Ũ = J·L·J upper triangular, so H⁻¹ = Ũ⁻ᵀ·Ũ⁻¹ and U = Ũ⁻¹ (the factor is unique with a
// positive diagonal). One factorisation and one triangular solve instead of a factorisation, a full
// inverse and a second factorisation (AutoGPTQ's cholesky → cholesky_inverse → cholesky): about half
// the work, and no rounding from the explicit inverse.
bool inverseCholeskyUpper(const MatD& H, MatD& U) {
    const MatD G = H.reverse();
    Eigen::LLT<MatD> llt(G);
    if (llt.info() != Eigen::Success) return false;
    const MatD Ut = MatD(llt.matrixL()).reverse();
    // U = Ũ⁻¹ by column blocks: columns j0..j1 of an upper-triangular inverse are zero below row j1, so
    // each block needs only the leading j1 × j1 part of Ũ (a third of a full solve's work); the blocks
    // are independent and run on all threads.
    const int n = static_cast<int>(H.rows());
    U = MatD::Identity(n, n);
    const int bs = 128;
    const int nb = (n + bs - 1) / bs;
    const int nt = std::max(1, std::min(defaultThreadCount(), nb));
    parallelFor(static_cast<size_t>(nt), [&](size_t t0, size_t t1, int) {
        for (size_t t = t0; t < t1; ++t)
            for (int b = nb - 1 - static_cast<int>(t); b >= 0; b -= nt) {  // striped: the costs grow with b
                const int j0 = b * bs, j1 = std::min(n, j0 + bs);
                auto blk = U.block(0, j0, j1, j1 - j0);
                Ut.topLeftCorner(j1, j1).triangularView<Eigen::Upper>().solveInPlace(blk);
            }
    }, nt, 1);
    return U.allFinite();
}

}  // namespace

Result<std::vector<float>> dampedInverseCholeskyUpper(std::vector<float> Hv, int cols, double dampPercent,
                                                      double* dampUsed) {
    if (cols <= 0 || Hv.size() != static_cast<size_t>(cols) * cols)
        return makeError("GPTQ: Hessian size does not match the layer");
    if (!(dampPercent > 0 && dampPercent < 1)) return makeError("GPTQ: damp_percent must be in (0, 1)");
    MatD H(cols, cols);
    for (int i = 0; i < cols; ++i)
        for (int j = 0; j < cols; ++j) H(i, j) = Hv[static_cast<size_t>(i) * cols + j];
    for (int i = 0; i < cols; ++i)
        if (H(i, i) == 0) H(i, i) = 1;
    double meanDiag = 0;
    for (int i = 0; i < cols; ++i) meanDiag += H(i, i);
    meanDiag /= cols;
    MatD U;
    double damp = dampPercent;
    for (;;) {
        MatD Hd = H;
        for (int i = 0; i < cols; ++i) Hd(i, i) += damp * meanDiag;
        if (inverseCholeskyUpper(Hd, U)) break;
        damp += 0.0025;
        if (damp >= 1.0) return makeError("GPTQ: the Hessian is not positive definite even with damp 1.0");
    }
    if (dampUsed) *dampUsed = damp;
    const MatF Uf = U.cast<float>();
    std::vector<float> out(static_cast<size_t>(cols) * cols);
    for (int i = 0; i < cols; ++i)
        for (int j = 0; j < cols; ++j) out[static_cast<size_t>(i) * cols + j] = Uf(i, j);
    return out;
}

Result<LayerResult> quantizeLayerGptq(const float* Wp, int rows, int cols, std::vector<float> Hv,
                                      const QuantConfig& c, const std::function<bool()>& cancel) {
    if (auto s = validateConfig(c); !s) return s.error();
    if (rows <= 0 || cols <= 0 || Hv.size() != static_cast<size_t>(cols) * cols)
        return makeError("GPTQ: Hessian size does not match the layer");
    const int maxq = c.maxq();
    const int gs = c.groupSize;
    const int nGroups = groupCount(cols, gs);

    LayerResult r;
    r.rows = rows;
    r.cols = cols;
    r.bits = c.bits;
    r.groupSize = gs;
    r.nGroups = nGroups;
    r.codes.assign(static_cast<size_t>(rows) * cols, 0);
    r.scales.assign(static_cast<size_t>(nGroups) * rows, 0.0f);
    r.zeros.assign(static_cast<size_t>(nGroups) * rows, 0);
    r.gIdx.assign(cols, 0);

    // H as double; dead columns.
    MatD H(cols, cols);
    for (int i = 0; i < cols; ++i)
        for (int j = 0; j < cols; ++j) H(i, j) = Hv[static_cast<size_t>(i) * cols + j];
    Hv.clear();
    Hv.shrink_to_fit();
    std::vector<char> dead(cols, 0);
    for (int i = 0; i < cols; ++i)
        if (H(i, i) == 0) {
            dead[i] = 1;
            H(i, i) = 1;
        }

    // Act-order permutation (stable sort, descending diag).
    std::vector<int> perm(cols);
    std::iota(perm.begin(), perm.end(), 0);
    if (c.descAct)
        std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return H(a, a) > H(b, b); });
    std::vector<int> invperm(cols);
    for (int i = 0; i < cols; ++i) invperm[perm[i]] = i;
    MatD Hp(cols, cols);
    for (int j = 0; j < cols; ++j)
        for (int i = 0; i < cols; ++i) Hp(i, j) = H(perm[i], perm[j]);
    H.resize(0, 0);

    double meanDiag = 0;
    for (int i = 0; i < cols; ++i) meanDiag += Hp(i, i);
    meanDiag /= cols;
    MatD U;
    double damp = c.dampPercent;
    for (;;) {
        MatD Hd = Hp;
        for (int i = 0; i < cols; ++i) Hd(i, i) += damp * meanDiag;
        if (inverseCholeskyUpper(Hd, U)) break;
        damp += 0.0025;
        if (damp >= 1.0) return makeError("GPTQ: the Hessian is not positive definite even with damp 1.0");
        if (cancel && cancel()) return cancelledError();
    }
    r.dampUsed = damp;
    Hp.resize(0, 0);
    const MatF Hinv = U.cast<float>();
    U.resize(0, 0);

    // g_idx and the processing-order group of each column.
    const int gsEff = gs <= 0 ? cols : gs;
    for (int k = 0; k < cols; ++k)
        r.gIdx[k] = (c.descAct && !c.staticGroups) ? invperm[k] / gsEff : k / gsEff;

    const int threads = c.threads > 0 ? c.threads : defaultThreadCount();
    // Fixed chunks of rows, whatever the thread count: a row's rounding depends on its place in its chunk
    // (Eigen's GEMM treats the rows left over after its 4-row panels differently), and the loss is summed
    // per chunk, so chunks sized by the thread count would make both depend on it.
    constexpr int chunk = 64;
    const int nChunks = (rows + chunk - 1) / chunk;
    std::vector<double> losses(nChunks, 0.0);
    std::atomic<bool> stop{false};

    parallelFor(
        static_cast<size_t>(nChunks),
        [&](size_t b, size_t e, int thread) {
            for (size_t ch = b; ch < e; ++ch) {
                const int r0 = static_cast<int>(ch) * chunk;
                const int nr = std::min(chunk, rows - r0);
                // Local W [nr × cols], column-major, original column order.
                MatF W(nr, cols);
                for (int i = 0; i < nr; ++i)
                    for (int j = 0; j < cols; ++j) W(i, j) = Wp[static_cast<size_t>(r0 + i) * cols + j];
                std::vector<float> scale(nr), zero(nr);
                if (gs <= 0)  // whole-row params, before dead columns are zeroed (as AutoGPTQ)
                    for (int i = 0; i < nr; ++i) findParams(&W(i, 0), cols, nr, c, scale[i], zero[i]);
                for (int j = 0; j < cols; ++j)
                    if (dead[j]) W.col(j).setZero();
                std::vector<float> sScale, sZero;  // static groups [nGroups][nr]
                if (c.staticGroups) {
                    sScale.resize(static_cast<size_t>(nGroups) * nr);
                    sZero.resize(sScale.size());
                    for (int g = 0; g < nGroups; ++g) {
                        const int n = std::min(gs, cols - g * gs);
                        for (int i = 0; i < nr; ++i)
                            findParams(&W(i, g * gs), n, nr, c, sScale[static_cast<size_t>(g) * nr + i],
                                       sZero[static_cast<size_t>(g) * nr + i]);
                    }
                }
                if (c.descAct) {
                    MatF Wq(nr, cols);
                    for (int j = 0; j < cols; ++j) Wq.col(j) = W.col(perm[j]);
                    W.swap(Wq);
                }
                std::vector<uint8_t> codesP(static_cast<size_t>(nr) * cols);  // [processing col][row]
                double loss = 0;
                for (int i1 = 0; i1 < cols; i1 += c.blockSize) {
                    if (thread == 0 && cancel && cancel()) stop = true;  // only one thread polls
                    if (stop.load(std::memory_order_relaxed)) return;
                    const int i2 = std::min(i1 + c.blockSize, cols);
                    const int count = i2 - i1;
                    MatF W1 = W.middleCols(i1, count);
                    MatF Err1(nr, count);
                    for (int i = 0; i < count; ++i) {
                        const int col = i1 + i;
                        if (gs > 0) {
                            if (!c.staticGroups) {
                                if (col % gs == 0) {
                                    const int n = std::min(gs, cols - col);
                                    const int g = col / gs;
                                    for (int rr = 0; rr < nr; ++rr) {
                                        findParams(&W(rr, col), n, nr, c, scale[rr], zero[rr]);
                                        r.scales[static_cast<size_t>(g) * rows + r0 + rr] = scale[rr];
                                        r.zeros[static_cast<size_t>(g) * rows + r0 + rr] =
                                            static_cast<int32_t>(zero[rr]);
                                    }
                                }
                            } else {
                                const int g = (c.descAct ? perm[col] : col) / gs;
                                for (int rr = 0; rr < nr; ++rr) {
                                    scale[rr] = sScale[static_cast<size_t>(g) * nr + rr];
                                    zero[rr] = sZero[static_cast<size_t>(g) * nr + rr];
                                }
                            }
                        }
                        const float d = Hinv(col, col);
                        for (int rr = 0; rr < nr; ++rr) {
                            const float w = W1(rr, i);
                            const uint8_t code = codeOf(w, scale[rr], zero[rr], maxq);
                            const float q = scale[rr] * (static_cast<float>(code) - zero[rr]);
                            codesP[static_cast<size_t>(col) * nr + rr] = code;
                            const float diff = w - q;
                            loss += static_cast<double>(diff) * diff / (static_cast<double>(d) * d) / 2;
                            Err1(rr, i) = diff / d;
                        }
                        // W1[:, i:] -= err ⊗ Hinv[col, col:i2]
                        for (int j = i; j < count; ++j) {
                            const float h = Hinv(col, i1 + j);
                            if (h == 0) continue;
                            W1.col(j) -= h * Err1.col(i);
                        }
                    }
                    if (i2 < cols)
                        W.rightCols(cols - i2).noalias() -= Err1 * Hinv.block(i1, i2, count, cols - i2);
                }
                if (gs <= 0)
                    for (int rr = 0; rr < nr; ++rr) {
                        r.scales[r0 + rr] = scale[rr];
                        r.zeros[r0 + rr] = static_cast<int32_t>(zero[rr]);
                    }
                if (c.staticGroups)
                    for (int g = 0; g < nGroups; ++g)
                        for (int rr = 0; rr < nr; ++rr) {
                            r.scales[static_cast<size_t>(g) * rows + r0 + rr] = sScale[static_cast<size_t>(g) * nr + rr];
                            r.zeros[static_cast<size_t>(g) * rows + r0 + rr] =
                                static_cast<int32_t>(sZero[static_cast<size_t>(g) * nr + rr]);
                        }
                for (int rr = 0; rr < nr; ++rr)
                    for (int k = 0; k < cols; ++k)
                        r.codes[static_cast<size_t>(r0 + rr) * cols + k] =
                            codesP[static_cast<size_t>(invperm[k]) * nr + rr];
                losses[ch] = loss;
            }
        },
        threads, 1);
    if (stop) return cancelledError();
    r.loss = std::accumulate(losses.begin(), losses.end(), 0.0);
    return r;
}

LayerResult quantizeLayerRtn(const float* W, int rows, int cols, const QuantConfig& c) {
    const int gs = c.groupSize <= 0 ? cols : c.groupSize;
    const int nGroups = groupCount(cols, c.groupSize);
    LayerResult r;
    r.rows = rows;
    r.cols = cols;
    r.bits = c.bits;
    r.groupSize = c.groupSize;
    r.nGroups = nGroups;
    r.codes.resize(static_cast<size_t>(rows) * cols);
    r.scales.resize(static_cast<size_t>(nGroups) * rows);
    r.zeros.resize(r.scales.size());
    r.gIdx.resize(cols);
    for (int k = 0; k < cols; ++k) r.gIdx[k] = k / gs;
    parallelFor(
        static_cast<size_t>(rows),
        [&](size_t b, size_t e, int) {
            for (size_t n = b; n < e; ++n)
                for (int g = 0; g < nGroups; ++g) {
                    const int k0 = g * gs, cnt = std::min(gs, cols - k0);
                    const float* x = W + n * cols + k0;
                    float s, z;
                    findParams(x, cnt, 1, c, s, z);
                    r.scales[static_cast<size_t>(g) * rows + n] = s;
                    r.zeros[static_cast<size_t>(g) * rows + n] = static_cast<int32_t>(z);
                    for (int k = 0; k < cnt; ++k) r.codes[n * cols + k0 + k] = codeOf(x[k], s, z, c.maxq());
                }
        },
        c.threads, 16);
    return r;
}

std::vector<float> dequantize(const LayerResult& r) {
    std::vector<float> out(static_cast<size_t>(r.rows) * r.cols);
    for (int n = 0; n < r.rows; ++n)
        for (int k = 0; k < r.cols; ++k) {
            const size_t gi = static_cast<size_t>(r.gIdx[k]) * r.rows + n;
            const float s16 = fp16ToFp32(fp32ToFp16(r.scales[gi]));
            const float v = s16 * static_cast<float>(static_cast<int>(r.codes[static_cast<size_t>(n) * r.cols + k]) -
                                                     r.zeros[gi]);
            out[static_cast<size_t>(n) * r.cols + k] = fp16ToFp32(fp32ToFp16(v));
        }
    return out;
}

double relativeOutputError(const float* W, const std::vector<float>& What, int rows, int cols,
                           const std::vector<float>& H, int threads) {
    // Σ_n dᵀ H d / Σ_n wᵀ H w over the rows n, in blocks of 64 rows (float GEMM, double sums).
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMat> Hm(H.data(), cols, cols);
    const int bs = 64;
    const int nb = (rows + bs - 1) / bs;
    std::vector<double> num(nb), den(nb);
    parallelFor(
        static_cast<size_t>(nb),
        [&](size_t b, size_t e, int) {
            for (size_t blk = b; blk < e; ++blk) {
                const int r0 = static_cast<int>(blk) * bs, n = std::min(bs, rows - r0);
                Eigen::Map<const RowMat> Wb(W + static_cast<size_t>(r0) * cols, n, cols);
                Eigen::Map<const RowMat> Qb(What.data() + static_cast<size_t>(r0) * cols, n, cols);
                const RowMat D = Wb - Qb;
                const RowMat TD = D * Hm;
                const RowMat TW = Wb * Hm;
                num[blk] = TD.cwiseProduct(D).cast<double>().sum();
                den[blk] = TW.cwiseProduct(Wb).cast<double>().sum();
            }
        },
        threads, 1);
    const double a = std::accumulate(num.begin(), num.end(), 0.0);
    const double b = std::accumulate(den.begin(), den.end(), 0.0);
    return b > 0 ? a / b : 0.0;
}

}  // namespace qz::gptq
