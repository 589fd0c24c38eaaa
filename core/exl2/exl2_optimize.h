// EXL2's optimizer (README.md E.6; exllamav2 v0.3.2 conversion/optimize.py and sim_anneal in
// exllamav2_ext/ext_quant.cpp): pick one option per slot (two slots per decoder layer: self_attn, mlp) so
// that Σ bits ≤ budget = int(numel(decoder linears) · target bpw) with the least Σ error^norm, error =
// 1 − accuracy of the measurement.
//
// exllamav2's schedule, kept: 3 stages of `samples` (80) simulated-annealing runs. Stage 1 sweeps the norm
// linearly over [1.5, 3.5], stage 2 over ±0.075 around the best norm of stage 1, stage 3 repeats the best
// norm; stages 1-2 rank runs by the largest single error of the solution, stage 3 keeps the run with the
// least Σ error^norm. Each run: temperature 2 → 1e-4, multiplied by 0.995 after every 1000 proposals
// (⌊ln(1e-4/2)/ln 0.995⌋ = 1975 temperatures); a proposal is a random slot and a random option of it,
// accepted when the budget allows (or it lowers the cost of an over-budget solution) and it lowers the
// error sum or with probability exp(−Δ/T) (not drawn when Δ/T ≥ 40: the probability is below 2^−57).
// Differences, deliberate:
//   * the random generator is ours and seeded (run i of a seed uses splitmix64-derived state): the result
//     is deterministic and the same on every platform; exllamav2 seeds from std::random_device;
//   * runs start from the cheapest option of every slot (exllamav2: option 0, which is the cheapest in
//     its tables), so a feasible budget is feasible from the start; exllamav2's unsigned cost delta never
//     lets an over-budget start move down (we compare signed);
//   * afterwards the leftover budget is spent greedily: while some slot can switch to an option with a
//     lower error that still fits, the switch with the largest decrease of error^norm per extra bit is
//     made (ties: lower slot, then lower option). exllamav2 v0.3.2 has no such step;
//   * then a descent over exchanges of one or two slots: while changing the options of one slot or of a
//     pair of slots lowers Σ error^norm and fits the budget, the change that lowers it most is made. Cost
//     per step (slots · options)² / 2 evaluations (~0.7 M for a 32-layer model);
//   * finally the exact least Σ error^norm within the budget at the chosen norm, by dynamic programming over
//     the slots on the Pareto front of (bits so far, error sum so far) (an entry is dropped when one with no
//     more bits has a lower sum: every completion of it is worse). When a front would exceed exactFrontMax
//     entries the step is skipped and the annealed choice stands (test_exl2_optimize times a 64-slot case).
//     Annealing alone lands near, not on, the least sum (0.1-1.4 % above it on bard-llama's measurements;
//     exllamav2 accepts that), the exchanges close part of the gap, the last step all of it.
//   The result never has a larger Σ error^norm than the annealing's; the norm is still chosen by
//   exllamav2's stages 1-2 (least maximum error), so the annealing runs matter.
#pragma once

#include <cstdint>
#include <vector>

#include "common/progress.h"
#include "common/result.h"

namespace qz::exl2 {

struct OptOption {
    int64_t bits = 0;
    double error = 0; // 1 − accuracy
};

struct OptimizeParams {
    int64_t budget = 0;
    uint64_t seed = 0;
    double normMin = 1.5, normMax = 3.5, norm2ndStage = 0.15;
    double tempMax = 2.0, tempMin = 1e-4, cooling = 0.995;
    int iterations = 1000; // proposals per temperature
    int samples = 80;      // runs per stage (3 stages)
    bool greedyFill = true;
    bool pairExchange = true;
    size_t exactFrontMax = 200000; // 0: no exact step
};

struct OptimizeResult {
    std::vector<int> choice; // option index per slot
    int64_t bits = 0;
    double errNormSum = 0; // Σ error^norm at the chosen norm (after the greedy fill)
    double maxError = 0;
    double norm = 0;
    int greedySteps = 0;
    int exchangeSteps = 0;
    bool exact = false; // the exact step ran: choice is the least Σ error^norm within the budget
};

// Fails when a slot has no options, the budget is below the cheapest combination (message names the
// smallest reachable total), or on cancel (polled once per annealing run).
Result<OptimizeResult> optimizeStrategy(const std::vector<std::vector<OptOption>>& slots,
                                        const OptimizeParams& p, ProgressFn progress = {});

// One annealing run (exposed for tests): returns the choice; sum/maxErr/bits filled.
std::vector<int> simAnneal(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
                           const OptimizeParams& p, uint64_t runSeed, double* sum, double* maxErr,
                           int64_t* bits);

// The exact step on its own (exposed for tests): false when the budget is infeasible or the front grows
// beyond maxEntries.
bool exactChoice(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
                 size_t maxEntries, std::vector<int>& choice);

// The exchange descent on its own (exposed for tests). Returns the number of changes made.
int pairExchange(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
                 std::vector<int>& choice);

// The greedy fill on its own (exposed for tests). Returns the number of switches made.
int greedyFill(const std::vector<std::vector<OptOption>>& slots, int64_t budget, double norm,
               std::vector<int>& choice);

} // namespace qz::exl2
