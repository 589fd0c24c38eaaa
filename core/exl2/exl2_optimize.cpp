#include "exl2/exl2_optimize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace qz::exl2 {

namespace {

struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // uniform in [0, n)
    size_t below(size_t n) { return static_cast<size_t>(((next() >> 32) * static_cast<uint64_t>(n)) >> 32); }
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

std::vector<int> cheapest(const std::vector<std::vector<OptOption>>& slots) {
    std::vector<int> c(slots.size(), 0);
    for (size_t i = 0; i < slots.size(); ++i)
        for (size_t j = 1; j < slots[i].size(); ++j)
            if (slots[i][j].bits < slots[i][c[i]].bits) c[i] = static_cast<int>(j);
    return c;
}

} // namespace

std::vector<int> simAnneal(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
                           const OptimizeParams& p, uint64_t runSeed, double* sumOut, double* maxErrOut,
                           int64_t* bitsOut) {
    const size_t n = slots.size();
    std::vector<std::vector<double>> pe(n);
    for (size_t i = 0; i < n; ++i)
        for (const auto& o : slots[i])
            pe[i].push_back(std::pow(std::max(0.0, o.error), norm));
    std::vector<int> sol = cheapest(slots);
    int64_t cost = 0;
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
        cost += slots[i][sol[i]].bits;
        sum += pe[i][sol[i]];
    }
    Rng rng{runSeed};
    double temp = p.tempMax;
    const int outer = static_cast<int>(std::log(p.tempMin / p.tempMax) / std::log(p.cooling));
    for (int j = 0; j < outer; ++j) {
        for (int k = 0; k < p.iterations; ++k) {
            const size_t i = rng.below(n);
            const size_t o = rng.below(slots[i].size());
            const int64_t dc = slots[i][o].bits - slots[i][sol[i]].bits;
            const double de = pe[i][o] - pe[i][sol[i]];
            if (cost + dc <= budget || (dc < 0 && cost > budget)) {
                // exp(−40) < 2^−57: such a proposal is never taken, skip drawing for it.
                const double z = de / temp;
                if (de < 0 || (z < 40.0 && rng.unit() < std::exp(-z))) {
                    sol[i] = static_cast<int>(o);
                    sum += de;
                    cost += dc;
                }
            }
        }
        temp *= p.cooling;
    }
    double mx = 0, s = 0;
    for (size_t i = 0; i < n; ++i) {
        mx = std::max(mx, slots[i][sol[i]].error);
        s += pe[i][sol[i]]; // recomputed (no drift)
    }
    if (sumOut) *sumOut = s;
    if (maxErrOut) *maxErrOut = mx;
    if (bitsOut) *bitsOut = cost;
    return sol;
}

int greedyFill(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
               std::vector<int>& choice) {
    int64_t cost = 0;
    for (size_t i = 0; i < slots.size(); ++i)
        cost += slots[i][choice[i]].bits;
    int steps = 0;
    for (;;) {
        double best = 0;
        size_t bi = 0, bo = 0;
        bool found = false;
        for (size_t i = 0; i < slots.size(); ++i) {
            const OptOption& c = slots[i][choice[i]];
            const double ce = std::pow(std::max(0.0, c.error), norm);
            for (size_t o = 0; o < slots[i].size(); ++o) {
                const OptOption& x = slots[i][o];
                if (!(x.error < c.error) || cost - c.bits + x.bits > budget) continue;
                const double gain = ce - std::pow(std::max(0.0, x.error), norm);
                const double per = gain / static_cast<double>(std::max<int64_t>(1, x.bits - c.bits));
                if (!found || per > best) {
                    best = per;
                    bi = i;
                    bo = o;
                    found = true;
                }
            }
        }
        if (!found) break;
        cost += slots[bi][bo].bits - slots[bi][choice[bi]].bits;
        choice[bi] = static_cast<int>(bo);
        ++steps;
    }
    return steps;
}

int pairExchange(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
                 std::vector<int>& choice) {
    const size_t n = slots.size();
    std::vector<std::vector<double>> pe(n);
    for (size_t i = 0; i < n; ++i)
        for (const auto& o : slots[i])
            pe[i].push_back(std::pow(std::max(0.0, o.error), norm));
    int64_t cost = 0;
    for (size_t i = 0; i < n; ++i)
        cost += slots[i][choice[i]].bits;
    int steps = 0;
    for (;;) {
        // The change of one or two slots that lowers Σ error^norm most and fits (ties: first found).
        double best = 0;
        size_t bi = 0, bj = 0, bo = 0, bp = 0;
        bool pair = false;
        for (size_t i = 0; i < n; ++i) {
            const int64_t ci = cost - slots[i][choice[i]].bits;
            for (size_t o = 0; o < slots[i].size(); ++o) {
                const int64_t c1 = ci + slots[i][o].bits;
                const double d1 = pe[i][o] - pe[i][choice[i]];
                if (c1 <= budget && d1 < best) {
                    best = d1;
                    bi = i;
                    bo = o;
                    pair = false;
                }
                for (size_t j = i + 1; j < n; ++j) {
                    const int64_t cj = c1 - slots[j][choice[j]].bits;
                    for (size_t q = 0; q < slots[j].size(); ++q) {
                        if (cj + slots[j][q].bits > budget) continue;
                        const double d = d1 + pe[j][q] - pe[j][choice[j]];
                        if (d < best) {
                            best = d;
                            bi = i;
                            bo = o;
                            bj = j;
                            bp = q;
                            pair = true;
                        }
                    }
                }
            }
        }
        // Stop when no change lowers the sum by more than rounding noise.
        double total = 0;
        for (size_t i = 0; i < n; ++i)
            total += pe[i][choice[i]];
        if (!(best < -1e-12 * total)) break;
        cost += slots[bi][bo].bits - slots[bi][choice[bi]].bits;
        choice[bi] = static_cast<int>(bo);
        if (pair) {
            cost += slots[bj][bp].bits - slots[bj][choice[bj]].bits;
            choice[bj] = static_cast<int>(bp);
        }
        ++steps;
    }
    return steps;
}

bool exactChoice(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
                 size_t maxEntries, std::vector<int>& choice) {
    struct Entry {
        int64_t bits;
        double err;
        int32_t parent, option;
    };
    const size_t n = slots.size();
    // Cheapest completion of slots i.. (prunes partial sums that cannot stay within the budget).
    std::vector<int64_t> minRest(n + 1, 0);
    for (size_t i = n; i-- > 0;) {
        int64_t m = slots[i][0].bits;
        for (const auto& o : slots[i])
            m = std::min(m, o.bits);
        minRest[i] = minRest[i + 1] + m;
    }
    if (minRest[0] > budget) return false;
    std::vector<std::vector<Entry>> fronts(n + 1);
    fronts[0].push_back({0, 0.0, -1, -1});
    size_t total = 1;
    std::vector<Entry> cand;
    for (size_t i = 0; i < n; ++i) {
        cand.clear();
        for (size_t k = 0; k < fronts[i].size(); ++k) {
            const Entry& e = fronts[i][k];
            for (size_t o = 0; o < slots[i].size(); ++o) {
                const int64_t b = e.bits + slots[i][o].bits;
                if (b + minRest[i + 1] > budget) continue;
                cand.push_back({b, e.err + std::pow(std::max(0.0, slots[i][o].error), norm),
                                static_cast<int32_t>(k), static_cast<int32_t>(o)});
            }
        }
        std::sort(cand.begin(), cand.end(), [](const Entry& a, const Entry& b) {
            return a.bits != b.bits ? a.bits < b.bits
                                    : (a.err != b.err ? a.err < b.err : a.parent < b.parent);
        });
        // Keep the entries no cheaper entry beats (strictly lower error than everything cheaper).
        for (const Entry& c : cand)
            if (fronts[i + 1].empty() || c.err < fronts[i + 1].back().err) fronts[i + 1].push_back(c);
        total += fronts[i + 1].size();
        if (fronts[i + 1].size() > maxEntries || total > 8 * maxEntries) return false;
    }
    // The last front's error decreases with bits: its last entry is the least error within the budget.
    const auto& last = fronts[n];
    if (last.empty()) return false;
    choice.assign(n, 0);
    int32_t k = static_cast<int32_t>(last.size()) - 1;
    for (size_t i = n; i-- > 0;) {
        const Entry& e = fronts[i + 1][k];
        choice[i] = e.option;
        k = e.parent;
    }
    return true;
}

Result<OptimizeResult> optimizeStrategy(const std::vector<std::vector<OptOption>>& slots,
                                        const OptimizeParams& p, ProgressFn progress) {
    if (slots.empty()) return makeError("EXL2 optimizer: nothing to optimize");
    for (const auto& s : slots) {
        if (s.empty()) return makeError("EXL2 optimizer: a module has no options");
        for (const auto& o : s)
            if (o.bits <= 0 || !std::isfinite(o.error) || o.error < 0)
                return makeError("EXL2 optimizer: an option has non-positive bits or an invalid error");
    }
    if (p.samples < 2 || p.iterations < 1 || !(p.cooling > 0 && p.cooling < 1) || !(p.tempMin > 0) ||
        !(p.tempMax > p.tempMin))
        return makeError("EXL2 optimizer: bad annealing parameters");
    const auto minChoice = cheapest(slots);
    int64_t minBits = 0;
    for (size_t i = 0; i < slots.size(); ++i)
        minBits += slots[i][minChoice[i]].bits;
    if (minBits > p.budget)
        return makeError("EXL2 optimizer: the budget of " + std::to_string(p.budget) +
                         " bits is below the smallest combination of options (" + std::to_string(minBits) +
                         " bits)");

    const int S = p.samples, total = 3 * S;
    double bestM = std::numeric_limits<double>::infinity(), bestP = std::numeric_limits<double>::infinity();
    double bestNorm = p.normMin, normA = 0, normB = 0;
    std::vector<int> best;
    uint64_t seedState = p.seed;
    for (int i = 0; i < total; ++i) {
        double norm;
        if (i < S) {
            const double t = static_cast<double>(i) / (S - 1);
            norm = (1 - t) * p.normMin + t * p.normMax;
        } else if (i < 2 * S) {
            if (i == S) {
                normA = bestNorm - p.norm2ndStage / 2;
                normB = bestNorm + p.norm2ndStage / 2;
            }
            const double t = static_cast<double>(i) / (S - 1) - 1;
            norm = (1 - t) * normA + t * normB;
        } else {
            norm = bestNorm;
        }
        Rng seeder{seedState};
        const uint64_t runSeed = seeder.next();
        seedState = seeder.s;
        double sum = 0, mx = 0;
        int64_t bits = 0;
        auto sol = simAnneal(slots, p.budget, norm, p, runSeed, &sum, &mx, &bits);
        if (i < 2 * S) {
            if (mx < bestM) {
                bestM = mx;
                bestNorm = norm;
            }
        } else if (sum < bestP) {
            bestP = sum;
            best = std::move(sol);
        }
        if (progress &&
            !progress(ProgressInfo{static_cast<double>(i + 1) / total,
                                   "optimize: run " + std::to_string(i + 1) + "/" + std::to_string(total)}))
            return cancelledError();
    }
    OptimizeResult r;
    r.choice = std::move(best);
    r.norm = bestNorm;
    if (p.greedyFill) r.greedySteps = greedyFill(slots, p.budget, bestNorm, r.choice);
    if (p.pairExchange) r.exchangeSteps = pairExchange(slots, p.budget, bestNorm, r.choice);
    if (p.exactFrontMax > 0) {
        std::vector<int> exact;
        if (exactChoice(slots, p.budget, bestNorm, p.exactFrontMax, exact)) {
            double se = 0, sc = 0;
            for (size_t i = 0; i < slots.size(); ++i) {
                se += std::pow(slots[i][exact[i]].error, bestNorm);
                sc += std::pow(slots[i][r.choice[i]].error, bestNorm);
            }
            r.exact = true;
            if (se < sc) r.choice = std::move(exact);
        }
    }
    for (size_t i = 0; i < slots.size(); ++i) {
        const OptOption& o = slots[i][r.choice[i]];
        r.bits += o.bits;
        r.errNormSum += std::pow(o.error, bestNorm);
        r.maxError = std::max(r.maxError, o.error);
    }
    if (r.bits > p.budget) return makeError("EXL2 optimizer: no solution within the budget was found");
    return r;
}

} // namespace qz::exl2
