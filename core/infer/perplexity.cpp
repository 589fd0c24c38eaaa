#include "infer/perplexity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/parallel.h"
#include "common/safe_file.h"

namespace qz {

namespace {

// −log softmax(logits)[tok], as llama-perplexity's default mode computes it.
double tokenNll(const float* logits, int nVocab, int tok) {
    float mx = logits[0];
    for (int i = 1; i < nVocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int i = 0; i < nVocab; ++i) sum += std::exp(logits[i] - mx);
    return -(static_cast<double>(logits[tok] - mx) - std::log(sum));
}

// Quantized log-probabilities of one position (the --kl-divergence-base storage): out[0..3] hold the
// floats {scale, min log-prob}, out[4 + i] the uint16 code of token i.
void storeLogProbs(const float* logits, int nVocab, uint16_t* out) {
    float mx = logits[0], mn = logits[0];
    for (int i = 1; i < nVocab; ++i) {
        mx = std::max(mx, logits[i]);
        mn = std::min(mn, logits[i]);
    }
    mn = std::max(mn, mx - 16);
    double sum = 0;
    for (int i = 0; i < nVocab; ++i) sum += std::exp(logits[i] - mx);
    const float lse = static_cast<float>(std::log(sum));
    const float minLogProb = mn - mx - lse;
    const float scale = (mx - mn) / 65535.f;
    std::memcpy(out, &scale, 4);
    std::memcpy(out + 2, &minLogProb, 4);
    uint16_t* q = out + 4;
    if (scale != 0.0f) {
        const float inv = 1 / scale;
        for (int i = 0; i < nVocab; ++i)
            q[i] = logits[i] > mn ? static_cast<uint16_t>(std::nearbyint(inv * (logits[i] - mn))) : 0;
    } else {
        std::fill(q, q + nVocab, uint16_t(0));
    }
}

struct KldToken {
    double kld = 0;
    float pDiff = 0;
    float nll = 0, nllBase = 0;
    bool sameTop = false;
};

KldToken kldOfToken(const float* logits, int nVocab, const uint16_t* base, int tok) {
    KldToken r;
    float mx = logits[0];
    int imax = 0;
    for (int i = 1; i < nVocab; ++i)
        if (logits[i] > mx) {
            mx = logits[i];
            imax = i;
        }
    double sum = 0;
    for (int i = 0; i < nVocab; ++i) sum += std::exp(logits[i] - mx);
    const float lse = static_cast<float>(std::log(sum));
    float scale, minLogProb;
    std::memcpy(&scale, base, 4);
    std::memcpy(&minLogProb, base + 2, 4);
    const uint16_t* q = base + 4;
    r.nll = mx + lse - logits[tok];
    r.nllBase = -(scale * q[tok] + minLogProb);
    const float logNorm = mx + lse;  // log q(i) = logits[i] − logNorm
    double kl = 0;
    int imaxBase = -1;
    float bestBase = 0;
    for (int i = 0; i < nVocab; ++i) {
        const float lpBase = scale * q[i] + minLogProb;
        if (i == 0 || lpBase > bestBase) {
            bestBase = lpBase;
            imaxBase = i;
        }
        if (lpBase > -16.f) {
            const float pBase = std::exp(lpBase);
            kl += pBase * (lpBase - logits[i] + logNorm);
        }
    }
    r.kld = kl;
    r.sameTop = imax == imaxBase;
    r.pDiff = std::exp(-r.nll) - std::exp(-r.nllBase);
    return r;
}

std::pair<double, double> meanAndUncertainty(double sum, double sum2, int64_t count) {
    if (count < 1) return {0., 0.};
    const double f = sum / count;
    double df = sum2 / count - f * f;
    df = df > 0 && count > 10 ? std::sqrt(df / (count - 1)) : 0.;
    return {f, df};
}

double covariance(double a, double b, double ab, int64_t count) {
    if (count < 10) return 0.0;
    double v = ab / count - (a / count) * (b / count);
    return v / (count - 1);
}

float percentile(const std::vector<float>& sorted, float fraction) {
    if (sorted.empty()) return 0;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    float p = fraction * (sorted.size() - 1);
    const size_t ip = static_cast<size_t>(p);
    p -= ip;
    return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

float median(const std::vector<float>& s) {
    if (s.empty()) return 0;
    return s.size() % 2 == 0 ? 0.5f * (s[s.size() / 2] + s[s.size() / 2 - 1]) : s[s.size() / 2];
}

// Evaluates one chunk from an empty cache; logits of positions first .. nCtx−1 into `logits`.
Status evalChunk(Engine& engine, const int32_t* chunk, int nCtx, bool addBos, int32_t bosId,
                 std::vector<float>& logits) {
    std::vector<int32_t> input(chunk, chunk + nCtx);
    if (addBos) input[0] = bosId;
    const int first = nCtx / 2;
    logits.resize(static_cast<size_t>(nCtx - first) * engine.nVocab());
    engine.reset();
    return engine.eval(input, 0, logits.data(), first);
}

Status checkParams(Engine& engine, int nCtx, const PerplexityParams& params) {
    if (nCtx < 4) return makeError("perplexity: context size must be at least 4");
    if (nCtx > engine.nCtxMax())
        return makeError("perplexity: context of " + std::to_string(nCtx) + " exceeds the engine's " +
                         std::to_string(engine.nCtxMax()));
    if (params.addBos && (params.bosId < 0 || params.bosId >= engine.nVocab()))
        return makeError("perplexity: BOS is requested but the BOS id is not in the vocabulary");
    return okStatus();
}

// The chunk loop shared by perplexity and KL-divergence: for each chunk (progress and cancel first) the
// engine evaluates it from an empty cache, then perToken(c, i, logits, target) runs in parallel for every
// scored position i (logits of position nCtx/2 + i, target token chunk[nCtx/2 + 1 + i]) and afterChunk(c)
// on this thread.
template <class PerToken, class AfterChunk>
Status forEachChunk(Engine& engine, const int32_t* tokens, int nChunks, int nCtx, const PerplexityParams& params,
                    const ProgressFn& progress, PerToken&& perToken, AfterChunk&& afterChunk,
                    const ChunkLogitsFn& chunkLogits = {}) {
    const int first = nCtx / 2;
    const int nScored = nCtx - 1 - first;
    const int nVocab = engine.nVocab();
    std::vector<float> logits;
    for (int c = 0; c < nChunks; ++c) {
        if (progress && !progress({static_cast<double>(c) / nChunks,
                                   "chunk " + std::to_string(c + 1) + " of " + std::to_string(nChunks)}))
            return cancelledError();
        const int32_t* chunk = tokens + static_cast<size_t>(c) * nCtx;
        auto st = chunkLogits ? chunkLogits(c, logits) : evalChunk(engine, chunk, nCtx, params.addBos, params.bosId, logits);
        if (!st) return st;
        if (logits.size() != static_cast<size_t>(nCtx - first) * nVocab)
            return makeError("perplexity: the logits of chunk " + std::to_string(c + 1) + " have the wrong size");
        parallelFor(static_cast<size_t>(nScored), [&](size_t i0, size_t i1, int) {
            for (size_t i = i0; i < i1; ++i) perToken(c, i, logits.data() + i * nVocab, chunk[first + 1 + i]);
        }, engine.threads(), 8);
        afterChunk(c);
    }
    if (progress && !progress({1.0, "done"})) return cancelledError();
    return okStatus();
}

}  // namespace

PerplexityParams defaultPerplexityParams(const Engine& engine, int nCtx, int nChunks) {
    PerplexityParams p;
    p.nCtx = nCtx;
    p.nChunks = nChunks;
    p.addBos = engine.hparams().addBos && engine.hparams().bosId >= 0;
    p.bosId = engine.hparams().bosId;
    return p;
}

int perplexityChunkCount(size_t nTokens, const PerplexityParams& params) {
    if (params.nCtx < 4 || nTokens < 2 * static_cast<size_t>(params.nCtx)) return 0;
    const int maxChunks = static_cast<int>(std::min<size_t>(nTokens / params.nCtx, INT32_MAX));
    return std::max(0, params.nChunks < 0 ? maxChunks : std::min(params.nChunks, maxChunks));
}

Result<PerplexityResult> computePerplexity(Engine& engine, std::span<const int32_t> tokens,
                                           const PerplexityParams& params, ProgressFn progress,
                                           KldBase* baseOut, const ChunkLogitsFn& chunkLogits) {
    const int nCtx = params.nCtx;
    if (auto st = checkParams(engine, nCtx, params); !st) return st.error();
    if (tokens.size() < 2 * static_cast<size_t>(nCtx))
        return makeError("perplexity: need at least " + std::to_string(2 * nCtx) + " tokens for a context of " +
                         std::to_string(nCtx) + ", the text has " + std::to_string(tokens.size()));
    const int nVocab = engine.nVocab();
    const int maxChunks = static_cast<int>(tokens.size() / nCtx);
    const int nChunks = params.nChunks < 0 ? maxChunks : std::min(params.nChunks, maxChunks);
    if (nChunks < 1) return makeError("perplexity: no chunk to evaluate");
    const int first = nCtx / 2;
    const int nScored = nCtx - 1 - first;

    if (baseOut) {
        baseOut->nCtx = nCtx;
        baseOut->nVocab = nVocab;
        baseOut->nChunks = nChunks;
        baseOut->tokens.assign(tokens.begin(), tokens.begin() + static_cast<size_t>(nChunks) * nCtx);
        baseOut->logProbs.assign(static_cast<size_t>(nChunks) * nScored * baseOut->rowStride(), 0);
    }

    PerplexityResult res;
    res.nCtx = nCtx;
    res.nChunks = nChunks;
    double nll = 0, nll2 = 0;
    std::vector<double> v(nScored);
    auto st = forEachChunk(
        engine, tokens.data(), nChunks, nCtx, params, progress,
        [&](int c, size_t i, const float* lg, int32_t target) {
            v[i] = tokenNll(lg, nVocab, target);
            if (baseOut)
                storeLogProbs(lg, nVocab,
                              baseOut->logProbs.data() + (static_cast<size_t>(c) * nScored + i) * baseOut->rowStride());
        },
        [&](int) {
            for (double x : v) {
                nll += x;
                nll2 += x * x;
            }
            res.count += nScored;
            res.runningPpl.push_back(std::exp(nll / res.count));
        },
        chunkLogits);
    if (!st) return st.error();
    nll /= res.count;
    nll2 /= res.count;
    res.meanNll = nll;
    res.ppl = std::exp(nll);
    nll2 -= nll * nll;
    res.pplError = nll2 > 0 ? std::sqrt(nll2 / (res.count - 1)) * res.ppl : 0.0;
    return res;
}

Result<KldResult> computeKlDivergence(Engine& engine, const KldBase& base, const PerplexityParams& params,
                                      ProgressFn progress) {
    const int nCtx = base.nCtx;
    if (auto st = checkParams(engine, nCtx, params); !st) return st.error();
    if (base.nVocab != engine.nVocab())
        return makeError("KL-divergence: the base has " + std::to_string(base.nVocab) + " tokens in its vocabulary, "
                         "this model " + std::to_string(engine.nVocab()));
    const int first = nCtx / 2;
    const int nScored = nCtx - 1 - first;
    const int nv = base.rowStride();
    if (base.nChunks < 1 || base.tokens.size() != static_cast<size_t>(base.nChunks) * nCtx ||
        base.logProbs.size() != static_cast<size_t>(base.nChunks) * nScored * nv)
        return makeError("KL-divergence: the base data is inconsistent");
    const int nVocab = engine.nVocab();
    for (int32_t t : base.tokens)
        if (t < 0 || t >= nVocab) return makeError("KL-divergence: the base holds a token outside the vocabulary");

    KldResult r;
    double sNll = 0, sNll2 = 0, sNllB = 0, sNllB2 = 0, sNllNllB = 0, sKld = 0, sKld2 = 0, sDp = 0, sDp2 = 0, sDp4 = 0;
    int64_t sameTop = 0;
    std::vector<float> pDiffs;
    std::vector<KldToken> tk(nScored);
    auto st = forEachChunk(
        engine, base.tokens.data(), base.nChunks, nCtx, params, progress,
        [&](int c, size_t i, const float* lg, int32_t target) {
            tk[i] = kldOfToken(lg, nVocab, base.logProbs.data() + (static_cast<size_t>(c) * nScored + i) * nv, target);
        },
        [&](int) {
            for (const KldToken& t : tk) {
                sNll += t.nll;
                sNll2 += t.nll * t.nll;
                sNllB += t.nllBase;
                sNllB2 += t.nllBase * t.nllBase;
                sNllNllB += t.nll * t.nllBase;
                sKld += t.kld;
                sKld2 += t.kld * t.kld;
                sDp += t.pDiff;
                const double d2 = t.pDiff * t.pDiff;  // float product, as llama-perplexity
                sDp2 += d2;
                sDp4 += d2 * d2;
                sameTop += t.sameTop;
                r.kldValues.push_back(static_cast<float>(t.kld));
                pDiffs.push_back(t.pDiff);
            }
        });
    if (!st) return st.error();
    const int64_t n = static_cast<int64_t>(r.kldValues.size());
    r.count = n;

    auto lp = meanAndUncertainty(sNll, sNll2, n);
    r.pplQ = std::exp(lp.first);
    r.pplQError = r.pplQ * lp.second;
    auto lb = meanAndUncertainty(sNllB, sNllB2, n);
    r.pplBase = std::exp(lb.first);
    r.pplBaseError = r.pplBase * lb.second;
    const double cov = covariance(sNll, sNllB, sNllNllB, n);
    r.corLogPpl = lp.second * lb.second > 0 ? cov / (lp.second * lb.second) : 0.0;
    r.lnPplRatio = lp.first - lb.first;
    r.lnPplRatioError = std::sqrt(std::max(0.0, lp.second * lp.second + lb.second * lb.second - 2.0 * cov));
    r.pplRatio = std::exp(r.lnPplRatio);
    r.pplRatioError = r.pplRatio * r.lnPplRatioError;
    const double pplCov = r.pplQ * r.pplBase * cov;
    r.pplDiff = r.pplQ - r.pplBase;
    r.pplDiffError = std::sqrt(std::max(0.0, r.pplQError * r.pplQError + r.pplBaseError * r.pplBaseError - 2.0 * pplCov));

    auto kl = meanAndUncertainty(sKld, sKld2, n);
    r.meanKld = kl.first;
    r.meanKldError = kl.second;
    std::vector<float> ks = r.kldValues;
    std::sort(ks.begin(), ks.end());
    r.maxKld = ks.back();
    r.kld999 = percentile(ks, 0.999f);
    r.kld99 = percentile(ks, 0.990f);
    r.kld95 = percentile(ks, 0.950f);
    r.kld90 = percentile(ks, 0.900f);
    r.medianKld = median(ks);
    r.kld10 = percentile(ks, 0.100f);
    r.kld05 = percentile(ks, 0.050f);
    r.kld01 = percentile(ks, 0.010f);
    r.kld001 = percentile(ks, 0.001f);
    r.minKld = ks.front();

    auto dp = meanAndUncertainty(sDp, sDp2, n);
    r.meanDp = dp.first;
    r.meanDpError = dp.second;
    std::sort(pDiffs.begin(), pDiffs.end());
    r.maxDp = pDiffs.back();
    r.dp999 = percentile(pDiffs, 0.999f);
    r.dp99 = percentile(pDiffs, 0.990f);
    r.dp95 = percentile(pDiffs, 0.950f);
    r.dp90 = percentile(pDiffs, 0.900f);
    r.dp75 = percentile(pDiffs, 0.750f);
    r.medianDp = median(pDiffs);
    r.dp25 = percentile(pDiffs, 0.250f);
    r.dp10 = percentile(pDiffs, 0.100f);
    r.dp05 = percentile(pDiffs, 0.050f);
    r.dp01 = percentile(pDiffs, 0.010f);
    r.dp001 = percentile(pDiffs, 0.001f);
    r.minDp = pDiffs.front();
    auto mse = meanAndUncertainty(sDp2, sDp4, n);
    r.rmsDp = std::sqrt(mse.first);
    r.rmsDpError = r.rmsDp > 0 ? 0.5 / r.rmsDp * mse.second : 0.0;
    r.sameTop = static_cast<double>(sameTop) / n;
    r.sameTopError = n > 1 ? std::sqrt(r.sameTop * (1 - r.sameTop) / (n - 1)) : 0.0;
    return r;
}

std::string formatFinalEstimate(const PerplexityResult& r) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "Final estimate: PPL = %.4f +/- %.5f", r.ppl, r.pplError);
    return buf;
}

std::string formatKldReport(const KldResult& r) {
    std::string s;
    char buf[160];
    auto line = [&](const char* fmt, auto... args) {
        std::snprintf(buf, sizeof buf, fmt, args...);
        s += buf;
        s += '\n';
    };
    line("====== Perplexity statistics ======");
    line("Mean PPL(Q)                   : %10.6f ± %10.6f", r.pplQ, r.pplQError);
    line("Mean PPL(base)                : %10.6f ± %10.6f", r.pplBase, r.pplBaseError);
    line("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%", 100.0 * r.corLogPpl);
    line("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f", r.lnPplRatio, r.lnPplRatioError);
    line("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f", r.pplRatio, r.pplRatioError);
    line("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f", r.pplDiff, r.pplDiffError);
    line("");
    line("====== KL divergence statistics ======");
    line("Mean    KLD: %10.6f ± %10.6f", r.meanKld, r.meanKldError);
    line("Maximum KLD: %10.6f", r.maxKld);
    line("99.9%%   KLD: %10.6f", r.kld999);
    line("99.0%%   KLD: %10.6f", r.kld99);
    line("95.0%%   KLD: %10.6f", r.kld95);
    line("90.0%%   KLD: %10.6f", r.kld90);
    line("Median  KLD: %10.6f", r.medianKld);
    line("10.0%%   KLD: %10.6f", r.kld10);
    line(" 5.0%%   KLD: %10.6f", r.kld05);
    line(" 1.0%%   KLD: %10.6f", r.kld01);
    line(" 0.1%%   KLD: %10.6f", r.kld001);
    line("Minimum KLD: %10.6f", r.minKld);
    line("");
    line("====== Token probability statistics ======");
    line("Mean    Δp: %6.3f ± %5.3f %%", 100.0 * r.meanDp, 100.0 * r.meanDpError);
    line("Maximum Δp: %6.3f%%", 100.0 * r.maxDp);
    line("99.9%%   Δp: %6.3f%%", 100.0 * r.dp999);
    line("99.0%%   Δp: %6.3f%%", 100.0 * r.dp99);
    line("95.0%%   Δp: %6.3f%%", 100.0 * r.dp95);
    line("90.0%%   Δp: %6.3f%%", 100.0 * r.dp90);
    line("75.0%%   Δp: %6.3f%%", 100.0 * r.dp75);
    line("Median  Δp: %6.3f%%", 100.0 * r.medianDp);
    line("25.0%%   Δp: %6.3f%%", 100.0 * r.dp25);
    line("10.0%%   Δp: %6.3f%%", 100.0 * r.dp10);
    line(" 5.0%%   Δp: %6.3f%%", 100.0 * r.dp05);
    line(" 1.0%%   Δp: %6.3f%%", 100.0 * r.dp01);
    line(" 0.1%%   Δp: %6.3f%%", 100.0 * r.dp001);
    line("Minimum Δp: %6.3f%%", 100.0 * r.minDp);
    line("RMS Δp    : %6.3f ± %5.3f %%", 100.0 * r.rmsDp, 100.0 * r.rmsDpError);
    line("Same top p: %6.3f ± %5.3f %%", 100.0 * r.sameTop, 100.0 * r.sameTopError);
    return s;
}

Status saveKldBase(const KldBase& base, const std::string& path) {
    OutputFile out;  // locked, unique O_EXCL temporary, fsync + rename (common/safe_file.h)
    if (auto s = out.open(path); !s) return s;
    const int32_t hdr[3] = {base.nCtx, base.nVocab, base.nChunks};
    if (auto s = out.write("_logits_", 8); !s) return s;
    if (auto s = out.write(hdr, sizeof hdr); !s) return s;
    if (auto s = out.write(base.tokens.data(), base.tokens.size() * sizeof(int32_t)); !s) return s;
    if (auto s = out.write(base.logProbs.data(), base.logProbs.size() * sizeof(uint16_t)); !s) return s;
    return out.commit();
}

Result<KldBase> loadKldBase(const std::string& path) {
    // Opened without blocking (a FIFO is refused) and only a regular file is read.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        return makeError(path + ": cannot open: " + std::strerror(err));
    }
    struct stat st {};
    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    ::close(fd);
    if (!regular) return makeError(path + ": not a regular file");
    std::ifstream in(path, std::ios::binary);
    if (!in) return makeError(path + ": cannot open");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    char magic[8];
    int32_t hdr[3];
    if (!in.read(magic, 8) || std::memcmp(magic, "_logits_", 8) != 0)
        return makeError(path + ": not a llama-perplexity logits file");
    if (!in.read(reinterpret_cast<char*>(hdr), sizeof hdr)) return makeError(path + ": truncated header");
    KldBase b;
    b.nCtx = hdr[0];
    b.nVocab = hdr[1];
    b.nChunks = hdr[2];
    if (b.nCtx < 4 || b.nCtx > (1 << 22) || b.nVocab < 1 || b.nVocab > (1 << 24) || b.nChunks < 1)
        return makeError(path + ": header values out of range");
    // Sizes in 128 bits: nChunks (2^31) x scored tokens (2^21) x row stride (2^24) x 2 bytes overflows 64.
    using U128 = unsigned __int128;
    const U128 nTok = static_cast<U128>(b.nCtx) * static_cast<U128>(b.nChunks);
    const U128 nLp = static_cast<U128>(b.nChunks) * static_cast<U128>(b.nCtx - 1 - b.nCtx / 2) *
                     static_cast<U128>(b.rowStride());
    if (U128{20} + nTok * 4 + nLp * 2 != static_cast<U128>(size))
        return makeError(path + ": file size does not match its header");
    b.tokens.resize(static_cast<size_t>(nTok));
    b.logProbs.resize(static_cast<size_t>(nLp));
    in.read(reinterpret_cast<char*>(b.tokens.data()), static_cast<std::streamsize>(nTok * 4));
    in.read(reinterpret_cast<char*>(b.logProbs.data()), static_cast<std::streamsize>(nLp * 2));
    if (!in) return makeError(path + ": read failed");
    return b;
}

}  // namespace qz
