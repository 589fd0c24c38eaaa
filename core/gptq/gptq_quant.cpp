#include "gptq/gptq_quant.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "calib/hessian.h"
#include "common/fp16.h"
#include "common/parallel.h"

#if QZ_HAVE_OPENBLAS
#include <cblas.h>
#include <f77blas.h>
#endif

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

// Upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), H damped, without forming H⁻¹: the Cholesky factor L of
// the reversed matrix G = J·H·J (J = reversal) gives H = Ũ·Ũᵀ with Ũ = J·L·J upper triangular, so
// H⁻¹ = Ũ⁻ᵀ·Ũ⁻¹ and U = Ũ⁻¹ (the factor is unique with a positive diagonal). One factorisation and one
// triangular solve instead of a factorisation, a full inverse and a second factorisation (AutoGPTQ's
// cholesky → cholesky_inverse → cholesky): about half the work, and no rounding from the explicit inverse.
// G (double, column-major, already reversed) is factorised in place and then holds Ũ; U's column blocks go
// to put(j0, j1, X) as they are solved, X = rows 0..j1 of U's columns j0..j1 (U is zero below). So the
// work space is G alone plus one block per thread, whatever the caller keeps of U. False if H is not
// positive definite (G is then destroyed).
// With OpenBLAS the factorisation is LAPACK's dpotrf and the solves dtrsm (single-threaded calls, the
// blocks spread over our threads), else Eigen's LLT and triangular solve: the same algorithm, float-rounding
// differences only (the result is then cast to float).
template <class Put> bool inverseCholeskyUpperInPlace(MatD& G, Put&& put) {
#if QZ_HAVE_OPENBLAS
    calib::useOpenBlasSingleThreaded();
    {
        char uplo = 'L';
        blasint nn = static_cast<blasint>(G.rows()), lda = nn, info = 0;
        dpotrf_(&uplo, &nn, G.data(), &lda, &info);
        if (info != 0) return false;  // not positive definite (a NaN pivot is caught by the finite check)
    }
#else
    Eigen::LLT<Eigen::Ref<MatD>> llt(G);
    if (llt.info() != Eigen::Success) return false;
#endif
    // Ũ(i, j) = L(n−1−i, n−1−j): reversing a column-major square matrix is reversing its storage. The strict
    // lower triangle then holds what was above L (the input's upper part), which the solves do not read.
    const int n = static_cast<int>(G.rows());
    std::reverse(G.data(), G.data() + static_cast<size_t>(n) * n);
    // Columns j0..j1 of an upper-triangular inverse are zero below row j1, so each block needs only the
    // leading j1 × j1 part of Ũ (a third of a full solve's work); the blocks are independent and run on all
    // threads.
    const int bs = 128;
    const int nb = (n + bs - 1) / bs;
    const int nt = std::max(1, std::min(defaultThreadCount(), nb));
    std::atomic<bool> finite{true};
    parallelFor(static_cast<size_t>(nt), [&](size_t t0, size_t t1, int) {
        MatD X;
        for (size_t t = t0; t < t1; ++t)
            for (int b = nb - 1 - static_cast<int>(t); b >= 0; b -= nt) {  // striped: the costs grow with b
                const int j0 = b * bs, j1 = std::min(n, j0 + bs);
                X.setZero(j1, j1 - j0);
                for (int j = j0; j < j1; ++j) X(j, j - j0) = 1;
#if QZ_HAVE_OPENBLAS
                cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, j1, j1 - j0, 1.0,
                            G.data(), n, X.data(), j1);
#else
                G.topLeftCorner(j1, j1).triangularView<Eigen::Upper>().solveInPlace(X);
#endif
                if (!X.allFinite()) finite = false;
                else put(j0, j1, X);
            }
    }, nt, 1);
    return finite;
}

}  // namespace

namespace {

// Dead columns, the processing order and the damped reversed Hessian's factorisation for one H.
// Hv row-major symmetric [cols][cols] (float, as the accumulator gives it), read only.
// put(j0, j1, X) as in inverseCholeskyUpperInPlace.
template <class Put>
Status factorHessian(const std::vector<float>& Hv, int cols, bool descAct, double dampPercent,
                     const std::function<bool()>& cancel, std::vector<char>& dead, std::vector<int>& perm,
                     double& dampUsed, Put&& put) {
    const size_t n = static_cast<size_t>(cols);
    dead.assign(n, 0);
    std::vector<double> diag(n);
    for (size_t i = 0; i < n; ++i) {
        diag[i] = Hv[i * n + i];
        if (diag[i] == 0) {
            dead[i] = 1;
            diag[i] = 1;
        }
    }
    // Act-order permutation (stable sort, descending diag).
    perm.resize(n);
    std::iota(perm.begin(), perm.end(), 0);
    if (descAct) std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
    double meanDiag = 0;  // summed in processing order
    for (size_t i = 0; i < n; ++i) meanDiag += diag[perm[i]];
    meanDiag /= cols;
    MatD G(cols, cols);
    double damp = dampPercent;
    for (;;) {
        // G(i, j) = Hd(perm[n−1−i], perm[n−1−j]), Hd = H with dead diagonals 1 and the damp added (in
        // 64 × 64 tiles: G is column-major, Hv row-major).
        constexpr size_t kT = 64;
        parallelFor(
            (n + kT - 1) / kT,
            [&](size_t b, size_t e, int) {
                for (size_t jb = b * kT; jb < std::min(n, e * kT); jb += kT)
                    for (size_t ib = 0; ib < n; ib += kT)
                        for (size_t i = ib; i < std::min(n, ib + kT); ++i) {
                            const float* src = Hv.data() + static_cast<size_t>(perm[n - 1 - i]) * n;
                            for (size_t j = jb; j < std::min(n, jb + kT); ++j)
                                G.data()[j * n + i] = i == j ? diag[perm[n - 1 - j]] + damp * meanDiag
                                                             : static_cast<double>(src[perm[n - 1 - j]]);
                        }
            },
            0, 1);
        if (inverseCholeskyUpperInPlace(G, put)) break;
        damp += 0.0025;
        if (damp >= 1.0) return makeError("GPTQ: the Hessian is not positive definite even with damp 1.0");
        if (cancel && cancel()) return cancelledError();
    }
    dampUsed = damp;
    return okStatus();
}

}  // namespace

Result<std::vector<float>> dampedInverseCholeskyUpper(std::vector<float> Hv, int cols, double dampPercent,
                                                      double* dampUsed) {
    if (cols <= 0 || Hv.size() != static_cast<size_t>(cols) * cols)
        return makeError("GPTQ: Hessian size does not match the layer");
    if (!(dampPercent > 0 && dampPercent < 1)) return makeError("GPTQ: damp_percent must be in (0, 1)");
    std::vector<float> out(static_cast<size_t>(cols) * cols, 0.0f);  // row-major
    std::vector<char> dead;
    std::vector<int> perm;
    double damp = 0;
    auto put = [&](int j0, int j1, const MatD& X) {
        for (int j = j0; j < j1; ++j)
            for (int i = 0; i < j1; ++i) out[static_cast<size_t>(i) * cols + j] = static_cast<float>(X(i, j - j0));
    };
    if (auto s = factorHessian(Hv, cols, false, dampPercent, {}, dead, perm, damp, put); !s) return s.error();
    if (dampUsed) *dampUsed = damp;
    return out;
}

Result<GptqFactor> prepareGptq(const std::vector<float>& H, int cols, const QuantConfig& c,
                               const std::function<bool()>& cancel) {
    if (auto s = validateConfig(c); !s) return s.error();
    if (cols <= 0 || H.size() != static_cast<size_t>(cols) * cols)
        return makeError("GPTQ: Hessian size does not match the layer");
    GptqFactor f;
    f.cols = cols;
    f.descAct = c.descAct;
    f.dampPercent = c.dampPercent;
    f.blockSize = c.blockSize;
    // U in row bands of blockSize rows, each from its diagonal to the last column (the only part of U the
    // column loop reads): band i1 is a column-major count × (cols − i1) matrix at bandOffset(i1).
    const int bsz = c.blockSize;
    size_t total = 0;
    for (int i1 = 0; i1 < cols; i1 += bsz) total += static_cast<size_t>(std::min(bsz, cols - i1)) * (cols - i1);
    try {
        f.bands.assign(total, 0.0f);
    } catch (const std::bad_alloc&) {
        return makeError("GPTQ: out of memory for the inverse Hessian factor (" + std::to_string(cols) + " columns)");
    }
    auto put = [&](int j0, int j1, const MatD& X) {
        for (int j = j0; j < j1; ++j)
            for (int i = 0; i < std::min(j + 1, j1); ++i) {  // U(i, j), i ≤ j
                const int i1 = i / bsz * bsz, count = std::min(bsz, cols - i1);
                f.bands[f.bandOffset(i1) + static_cast<size_t>(j - i1) * count + (i - i1)] =
                    static_cast<float>(X(i, j - j0));
            }
    };
    if (auto s = factorHessian(H, cols, c.descAct, c.dampPercent, cancel, f.dead, f.perm, f.dampUsed, put); !s)
        return s.error();
    f.invperm.resize(cols);
    for (int i = 0; i < cols; ++i) f.invperm[f.perm[i]] = i;
    return f;
}

size_t GptqFactor::bandOffset(int i1) const {
    // Σ over the bands above: count_b × (cols − b·blockSize); all but possibly the last band are full.
    const size_t b = static_cast<size_t>(i1 / blockSize);
    size_t off = 0;
    for (size_t k = 0; k < b; ++k) off += static_cast<size_t>(blockSize) * (cols - k * blockSize);
    return off;
}

Result<LayerResult> quantizeLayerGptq(const float* Wp, int rows, int cols, std::vector<float> Hv,
                                      const QuantConfig& c, const std::function<bool()>& cancel) {
    if (auto s = validateConfig(c); !s) return s.error();
    if (rows <= 0 || cols <= 0 || Hv.size() != static_cast<size_t>(cols) * cols)
        return makeError("GPTQ: Hessian size does not match the layer");
    auto f = prepareGptq(Hv, cols, c, cancel);
    if (!f) return f.error();
    Hv.clear();
    Hv.shrink_to_fit();
    return quantizeLayerGptq(Wp, rows, cols, *f, c, cancel);
}

Result<LayerResult> quantizeLayerGptq(const float* Wp, int rows, int cols, const GptqFactor& f, const QuantConfig& c,
                                      const std::function<bool()>& cancel) {
    if (auto s = validateConfig(c); !s) return s.error();
    if (rows <= 0 || cols <= 0 || f.cols != cols)
        return makeError("GPTQ: the Hessian factor does not match the layer");
    if (f.descAct != c.descAct || f.dampPercent != c.dampPercent || f.blockSize != c.blockSize)
        return makeError("GPTQ: the Hessian factor was made for another configuration");
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
    r.dampUsed = f.dampUsed;
    calib::useOpenBlasSingleThreaded();
    const std::vector<char>& dead = f.dead;
    const std::vector<int>& perm = f.perm;
    const std::vector<int>& invperm = f.invperm;

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
                    const Eigen::Map<const MatF> band(f.bands.data() + f.bandOffset(i1), count, cols - i1);
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
                        const float d = band(i, i);
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
                            const float h = band(i, j);
                            if (h == 0) continue;
                            W1.col(j) -= h * Err1.col(i);
                        }
                    }
                    if (i2 < cols) {
#if QZ_HAVE_OPENBLAS
                        // One single-threaded SGEMM per chunk and block (whichever thread runs it).
                        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, nr, cols - i2, count, -1.0f,
                                    Err1.data(), nr, band.data() + static_cast<size_t>(i2 - i1) * count, count, 1.0f,
                                    W.data() + static_cast<size_t>(i2) * nr, nr);
#else
                        W.rightCols(cols - i2).noalias() -= Err1 * band.rightCols(cols - i2);
#endif
                    }
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
#if QZ_HAVE_OPENBLAS
    // tr(D H Dᵀ) = ⟨H, DᵀD⟩ (H symmetric): DᵀD and WᵀW by SSYRK, half the products of D·H, in a fixed grid of
    // 256-feature block columns (the diagonal tile by SSYRK, the rows below it by one SGEMM, as the Hessian
    // accumulator), each block column by one thread with single-threaded calls, its ⟨H, ·⟩ summed in double;
    // the block columns' sums are added in order, so the result does not depend on the thread count.
    calib::useOpenBlasSingleThreaded();
    const size_t n = static_cast<size_t>(cols);
    std::vector<float> D(static_cast<size_t>(rows) * n);
    parallelFor(
        static_cast<size_t>(rows),
        [&](size_t b, size_t e, int) {
            for (size_t i = b * n; i < e * n; ++i) D[i] = W[i] - What[i];
        },
        threads, 64);
    constexpr int pw = 256;
    const int np = (cols + pw - 1) / pw;
    std::vector<double> num(np), den(np);
    std::atomic<int> next{0};
    const int nt = std::max(1, std::min(threads > 0 ? threads : defaultThreadCount(), np));
    parallelFor(
        static_cast<size_t>(nt),
        [&](size_t, size_t, int) {
            std::vector<float> C;
            for (int p = next.fetch_add(1); p < np; p = next.fetch_add(1)) {
                const int c0 = p * pw, w = std::min(pw, cols - c0), m = cols - c0;
                C.resize(static_cast<size_t>(m) * w);
                // ⟨H, XᵀX⟩ over block column p: C(i, j) = (XᵀX)(c0 + i, c0 + j), i ≥ j, column-major m × w.
                auto inner = [&](const float* X) {
                    cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, w, rows, 1.0f, X + c0, cols, 0.0f, C.data(), m);
                    if (m > w)
                        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, m - w, w, rows, 1.0f, X + c0 + w, cols,
                                    X + c0, cols, 0.0f, C.data() + w, m);
                    double sum = 0;
                    for (int j = 0; j < w; ++j) {
                        const float* h = H.data() + static_cast<size_t>(c0 + j) * n + c0;  // H(c0 + j, c0 + i)
                        const float* c = C.data() + static_cast<size_t>(j) * m;
                        double col = 0;
                        for (int i = j + 1; i < m; ++i) col += static_cast<double>(h[i]) * c[i];
                        sum += 2 * col + static_cast<double>(h[j]) * c[j];
                    }
                    return sum;
                };
                num[p] = inner(D.data());
                den[p] = inner(W);
            }
        },
        nt, 1);
#else
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
#endif
    const double a = std::accumulate(num.begin(), num.end(), 0.0);
    const double b = std::accumulate(den.begin(), den.end(), 0.0);
    return b > 0 ? a / b : 0.0;
}

}  // namespace qz::gptq
