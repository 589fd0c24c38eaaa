// The EXL2 optimizer (core/exl2/exl2_optimize.h) on hand-made option sets whose optimum is derived by hand
// (or by brute force over every combination, computed here independently): the budget is respected, the
// least-error feasible combination is found, the greedy fill spends what is left in the expected order,
// the exchange descent finds a two-slot swap no single change can,
// a seed gives the same answer every time, an impossible budget is refused.
// llama7bTargets: the optimizer's input built as the EXL2 pipeline builds it (exl2_export.cpp) for a
// Llama-2-7B shape, with the real candidate tables and bit totals but synthetic errors (nothing is
// measured): every target bpw from 2.5 to 8.0 is met within 0.02 (the required bound), which the 8-module
// bard-llama test model cannot show at 8.0 bpw (its 8-bit options all cost more than 8 bpw there).
#include <QtTest>

#include <cmath>
#include <limits>

#include "exl2/exl2_measure.h"
#include "exl2/exl2_optimize.h"
#include "exl2/exl2_qparams.h"

using namespace qz;
using namespace qz::exl2;

namespace {

OptimizeParams fastParams(int64_t budget, uint64_t seed = 7) {
    OptimizeParams p;
    p.budget = budget;
    p.seed = seed;
    p.iterations = 50; // the schedule's 1975 temperatures, 50 proposals each (tests stay fast)
    p.samples = 8;
    return p;
}

double sumPow(const std::vector<std::vector<OptOption>>& table, const std::vector<int>& c, double norm) {
    double s = 0;
    for (size_t i = 0; i < table.size(); ++i)
        s += std::pow(table[i][c[i]].error, norm);
    return s;
}

int64_t bitsOf(const std::vector<std::vector<OptOption>>& table, const std::vector<int>& c) {
    int64_t b = 0;
    for (size_t i = 0; i < table.size(); ++i)
        b += table[i][c[i]].bits;
    return b;
}

} // namespace

class TestExl2Optimize : public QObject {
    Q_OBJECT
  private slots:
    void defaultsAreExllamav2Schedule();
    void twoSlotsHandDerived();
    void identicalSlotsExactBudget();
    void bruteForceOptimum();
    void greedyFillOrder();
    void pairExchangeFindsSwap();
    void exactStepLargeModel();
    void deterministicWithSeed();
    void refusesImpossibleBudget();
    void cancels();
    void llama7bTargets();
};

void TestExl2Optimize::defaultsAreExllamav2Schedule() {
    // exllamav2 v0.3.2 optimize.py: norm (1.5, 3.5), 2nd stage 0.15, temperature 2 → 1e-4, ×0.995,
    // 1000 iterations, 80 samples per stage.
    OptimizeParams p;
    QCOMPARE(p.normMin, 1.5);
    QCOMPARE(p.normMax, 3.5);
    QCOMPARE(p.norm2ndStage, 0.15);
    QCOMPARE(p.tempMax, 2.0);
    QCOMPARE(p.tempMin, 1e-4);
    QCOMPARE(p.cooling, 0.995);
    QCOMPARE(p.iterations, 1000);
    QCOMPARE(p.samples, 80);
}

void TestExl2Optimize::twoSlotsHandDerived() {
    // Feasible combinations within 40 bits: (10,10) errors (.5,.4); (10,20) (.5,.3); (20,10) (.2,.4);
    // (10,30) (.5,.05); (20,20) (.2,.2); (30,10) (.1,.4). For every norm in [1.4, 3.6] (20,20) has the
    // least Σ e^p (2·0.2^p < 0.4^p + 0.1^p < 0.5^p + 0.05^p) and the least maximum: choice {1, 1}.
    const std::vector<std::vector<OptOption>> table = {{{10, 0.5}, {20, 0.2}, {30, 0.1}},
                                                       {{10, 0.4}, {20, 0.2}, {30, 0.05}}};
    auto r = optimizeStrategy(table, fastParams(40));
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QCOMPARE(r->choice, (std::vector<int>{1, 1}));
    QCOMPARE(r->bits, int64_t(40));
    QVERIFY(r->norm >= 1.4 && r->norm <= 3.6);
    QCOMPARE(r->maxError, 0.2);
    // Within 39 bits only (10,10) (.5,.4), (10,20) (.5,.2) and (20,10) (.2,.4) fit: the least Σ e^p is
    // (20,10), and no single step up fits in the 9 bits left.
    auto r39 = optimizeStrategy(table, fastParams(39));
    QVERIFY(r39.ok());
    QCOMPARE(r39->choice, (std::vector<int>{1, 0}));
    QCOMPARE(r39->bits, int64_t(30));
}

void TestExl2Optimize::identicalSlotsExactBudget() {
    // 6 identical table {(100, .30), (200, .10), (300, .05)}, budget 1400. With n1/n2/n3 table on each
    // option: n1+n2+n3 = 6 and n2 + 2·n3 <= 8. n1 = 0 allows n3 <= 2 → (0,4,2); n1 >= 1 costs
    // .3^p − 2·.1^p + .05^p > 0 more at every p in [1.5, 3.5]. So exactly two table at 300 bits, four at
    // 200, 1400 bits.
    std::vector<std::vector<OptOption>> table(6, {{100, 0.30}, {200, 0.10}, {300, 0.05}});
    auto r = optimizeStrategy(table, fastParams(1400));
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    int n[3] = {0, 0, 0};
    for (int c : r->choice)
        ++n[c];
    QCOMPARE(n[0], 0);
    QCOMPARE(n[1], 4);
    QCOMPARE(n[2], 2);
    QCOMPARE(r->bits, int64_t(1400));
}

void TestExl2Optimize::bruteForceOptimum() {
    // 6 table × 4 options (4096 combinations) with uneven costs and errors; the optimizer's answer must be
    // the least Σ e^norm over every combination within the budget, at the norm it chose.
    std::vector<std::vector<OptOption>> table;
    uint64_t s = 12345;
    auto rnd = [&] {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<double>(s >> 11) * 0x1.0p-53;
    };
    for (int i = 0; i < 6; ++i) {
        std::vector<OptOption> opts;
        double err = 0.2 + 0.2 * rnd();
        int64_t bits = 1000 + static_cast<int64_t>(500 * rnd());
        for (int k = 0; k < 4; ++k) {
            opts.push_back({bits, err});
            bits += 300 + static_cast<int64_t>(700 * rnd());
            err *= 0.3 + 0.4 * rnd();
        }
        table.push_back(opts);
    }
    int64_t minB = 0, maxB = 0;
    for (const auto& o : table) {
        minB += o.front().bits;
        maxB += o.back().bits;
    }
    for (double f : {0.3, 0.6}) {
        const int64_t budget = minB + static_cast<int64_t>(f * (maxB - minB));
        auto r = optimizeStrategy(table, fastParams(budget));
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QVERIFY(r->bits <= budget);
        QCOMPARE(bitsOf(table, r->choice), r->bits);
        double best = std::numeric_limits<double>::infinity();
        std::vector<int> c(6);
        for (int code = 0; code < 4096; ++code) {
            for (int i = 0, v = code; i < 6; ++i, v /= 4)
                c[i] = v % 4;
            if (bitsOf(table, c) <= budget) best = std::min(best, sumPow(table, c, r->norm));
        }
        const double got = sumPow(table, r->choice, r->norm);
        QVERIFY2(got <= best * (1 + 1e-12), qPrintable(QString("got %1, optimum %2").arg(got).arg(best)));
        QCOMPARE(r->errNormSum, got);
    }
}

void TestExl2Optimize::greedyFillOrder() {
    // Norm 1. Start (10, 10) = 20 bits of 30. A→15 gains .2 for 5 bits (.04/bit), B→12 gains .05 for 2 bits
    // (.025/bit), A→40 does not fit: A→15 first (25 bits), then B→12 (27 bits), then nothing fits.
    const std::vector<std::vector<OptOption>> table = {{{10, 0.5}, {15, 0.3}, {40, 0.01}},
                                                       {{10, 0.5}, {12, 0.45}}};
    std::vector<int> choice = {0, 0};
    QCOMPARE(greedyFill(table, 30, 1.0, choice), 2);
    QCOMPARE(choice, (std::vector<int>{1, 1}));
    // With 50 bits: A→40 gains .49 for 30 bits (.0163/bit) < A→15's .04/bit: A→15 (25), B→12 (27); then
    // A→40 (+25 bits = 52) does not fit.
    choice = {0, 0};
    QCOMPARE(greedyFill(table, 50, 1.0, choice), 2);
    QCOMPARE(choice, (std::vector<int>{1, 1}));
    // With 52 bits it does, as a third step.
    choice = {0, 0};
    QCOMPARE(greedyFill(table, 52, 1.0, choice), 3);
    QCOMPARE(choice, (std::vector<int>{2, 1}));
    // Never a worse option: an option with more bits but a higher error is not taken.
    const std::vector<std::vector<OptOption>> worse = {{{10, 0.2}, {20, 0.3}}};
    choice = {0};
    QCOMPARE(greedyFill(worse, 100, 2.0, choice), 0);
    QCOMPARE(choice, (std::vector<int>{0}));
}

void TestExl2Optimize::pairExchangeFindsSwap() {
    // Norm 1, budget 30, start A=20 bits (.2), B=10 bits (.6): Σ .8. No single change helps (A→10 raises
    // the sum to .9, B→20 does not fit), the pair A→10, B→20 costs 30 bits and gives .3 + .1 = .4.
    const std::vector<std::vector<OptOption>> table = {{{10, 0.3}, {20, 0.2}}, {{10, 0.6}, {20, 0.1}}};
    std::vector<int> choice = {1, 0};
    QCOMPARE(greedyFill(table, 30, 1.0, choice), 0);
    QCOMPARE(pairExchange(table, 30, 1.0, choice), 1);
    QCOMPARE(choice, (std::vector<int>{0, 1}));
    // Already optimal: nothing changes.
    QCOMPARE(pairExchange(table, 30, 1.0, choice), 0);
    // Without room for the pair (29 bits) the start stays.
    choice = {1, 0};
    QCOMPARE(pairExchange(table, 29, 1.0, choice), 0);
    QCOMPARE(choice, (std::vector<int>{1, 0}));
}

void TestExl2Optimize::exactStepLargeModel() {
    // A 32-layer model's shape: 64 slots × 19 options with realistic bit totals (4096-wide layers) and
    // errors falling with bits plus noise. The exact step must finish with a modest front, and its answer
    // must be no worse than annealing + greedy fill + exchanges alone, within the budget.
    std::vector<std::vector<OptOption>> table;
    uint64_t s = 99;
    auto rnd = [&] {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<double>(s >> 11) * 0x1.0p-53;
    };
    int64_t numel = 0;
    for (int i = 0; i < 64; ++i) {
        const int64_t ne = i % 2 ? 3 * 4096 * 14336 : 4 * 4096 * 4096;
        numel += ne;
        std::vector<OptOption> o;
        for (int k = 0; k < 19; ++k) {
            const double bpw = 2.2 + 6.0 * k / 18 + 0.05 * rnd();
            o.push_back({static_cast<int64_t>(bpw * static_cast<double>(ne)),
                         (0.05 + 0.02 * rnd()) * std::pow(0.5, bpw) * (1 + 0.1 * (i % 7))});
        }
        table.push_back(o);
    }
    OptimizeParams p = fastParams(static_cast<int64_t>(static_cast<double>(numel) * 4.65));
    p.samples = 4;
    p.iterations = 20;
    QElapsedTimer t;
    t.start();
    auto exact = optimizeStrategy(table, p);
    const qint64 ms = t.elapsed();
    p.exactFrontMax = 0;
    auto heur = optimizeStrategy(table, p);
    QVERIFY(exact.ok() && heur.ok());
    QVERIFY(exact->exact);
    QVERIFY(!heur->exact);
    QCOMPARE(exact->norm, heur->norm);
    QVERIFY(exact->bits <= p.budget);
    const double se = sumPow(table, exact->choice, exact->norm), sh = sumPow(table, heur->choice, heur->norm);
    qInfo("64 slots: exact Σ %.6g, heuristic Σ %.6g, %lld ms with the exact step", se, sh,
          static_cast<long long>(ms));
    QVERIFY(se <= sh);
    // Exactness on this size: no single or paired change improves the exact answer.
    std::vector<int> c = exact->choice;
    QCOMPARE(pairExchange(table, p.budget, exact->norm, c), 0);
}

void TestExl2Optimize::deterministicWithSeed() {
    std::vector<std::vector<OptOption>> table;
    for (int i = 0; i < 16; ++i) {
        std::vector<OptOption> o;
        for (int k = 0; k < 10; ++k)
            o.push_back({1000 + 150 * k + 7 * i, 0.3 / (1 + k + 0.1 * (i % 5))});
        table.push_back(o);
    }
    const int64_t budget = 16 * 1000 + 16 * 600;
    auto a = optimizeStrategy(table, fastParams(budget, 42));
    auto b = optimizeStrategy(table, fastParams(budget, 42));
    QVERIFY(a.ok() && b.ok());
    QCOMPARE(a->choice, b->choice);
    QCOMPARE(a->norm, b->norm);
    QCOMPARE(a->bits, b->bits);
    QVERIFY(a->bits <= budget);
    // The leftover after the greedy fill is smaller than any single improving step.
    for (size_t i = 0; i < table.size(); ++i)
        for (size_t k = 0; k < table[i].size(); ++k)
            if (table[i][k].error < table[i][a->choice[i]].error)
                QVERIFY(a->bits - table[i][a->choice[i]].bits + table[i][k].bits > budget);
    // One annealing run is a pure function of its seed too.
    double s1, s2, m1, m2;
    int64_t b1, b2;
    auto c1 = simAnneal(table, budget, 2.0, fastParams(budget), 99, &s1, &m1, &b1);
    auto c2 = simAnneal(table, budget, 2.0, fastParams(budget), 99, &s2, &m2, &b2);
    QCOMPARE(c1, c2);
    QCOMPARE(s1, s2);
    QVERIFY(b1 <= budget);
}

void TestExl2Optimize::refusesImpossibleBudget() {
    const std::vector<std::vector<OptOption>> table = {{{10, 0.5}, {20, 0.2}}, {{15, 0.4}, {25, 0.2}}};
    auto r = optimizeStrategy(table, fastParams(24));
    QVERIFY(!r.ok());
    QVERIFY(r.error().message.find("25 bits") != std::string::npos);
    QVERIFY(optimizeStrategy(table, fastParams(25)).ok()); // exactly the smallest combination
    QVERIFY(!optimizeStrategy({}, fastParams(100)).ok());
    QVERIFY(!optimizeStrategy({{}}, fastParams(100)).ok());
}

void TestExl2Optimize::cancels() {
    const std::vector<std::vector<OptOption>> table = {{{10, 0.5}, {20, 0.2}}, {{15, 0.4}, {25, 0.2}}};
    int calls = 0;
    auto r = optimizeStrategy(table, fastParams(40), [&](const ProgressInfo&) { return ++calls < 3; });
    QVERIFY(!r.ok());
    QVERIFY(r.error().cancelled);
    QCOMPARE(calls, 3);
}

namespace {

// Llama-2-7B's decoder as planModel would lay it out (exl2_measure.h): hidden 4096, intermediate 11008,
// 32 layers, 32 heads without GQA; per layer the modules self_attn (q, k, v, o: 4096 → 4096) and mlp
// (gate, up: 4096 → 11008; down: 11008 → 4096), no biases. LinearRef.in is EXL2's rows.
ModelPlan llama7bPlan() {
    ModelPlan plan;
    auto lin = [](const std::string& prefix, const char* slot, int out, int in) {
        LinearRef L;
        L.prefix = prefix + "." + slot;
        L.slot = slot;
        L.weightName = L.prefix + ".weight";
        L.out = out;
        L.in = in;
        return L;
    };
    for (int l = 0; l < 32; ++l) {
        const std::string base = "model.layers." + std::to_string(l);
        ModuleRef a;
        a.key = base + ".self_attn";
        a.layer = l;
        a.attn = true;
        for (const char* s : {"q_proj", "k_proj", "v_proj", "o_proj"})
            a.linears.push_back(lin(a.key, s, 4096, 4096));
        ModuleRef m;
        m.key = base + ".mlp";
        m.layer = l;
        m.attn = false;
        m.linears.push_back(lin(m.key, "gate_proj", 11008, 4096));
        m.linears.push_back(lin(m.key, "up_proj", 11008, 4096));
        m.linears.push_back(lin(m.key, "down_proj", 4096, 11008));
        plan.modules.push_back(a);
        plan.modules.push_back(m);
    }
    return plan;
}

} // namespace

void TestExl2Optimize::llama7bTargets() {
    const ModelPlan plan = llama7bPlan();
    // 32 · (4 · 4096² + 3 · 4096 · 11008), by hand.
    const int64_t numel = plan.decoderNumel();
    QCOMPARE(numel, int64_t(6476005376));

    // The options of every module as the measurement pass forms them (exl2_measure.cpp measureModel): the
    // table reduced per slot (reducedOptions → reduceQParams), each distinct setting's totalBits on its
    // linear's shape, an option's total_bits = Σ over its slots. The error is synthetic and monotone:
    // c_module · 2^(−bpw of the option), c_module seeded in [0.05, 0.15) (a real measurement has about this
    // fall of ~1/2 per extra bit; its exact values do not matter for how closely the budget can be met).
    uint64_t s = 2024;
    auto rnd = [&] {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<double>(s >> 11) * 0x1.0p-53;
    };
    const ReducedOptions red[2] = {reducedOptions(true), reducedOptions(false)};
    std::vector<std::vector<OptOption>> mods;
    int64_t minBits = 0, maxBits = 0;
    for (const ModuleRef& m : plan.modules) {
        const ReducedOptions& r = red[m.attn ? 0 : 1];
        QCOMPARE(r.slotParams.size(), m.linears.size());
        std::vector<std::vector<int64_t>> bits(m.linears.size());
        for (size_t k = 0; k < m.linears.size(); ++k)
            for (const QParams& qp : r.slotParams[k])
                bits[k].push_back(qp.totalBits(m.linears[k].in, m.linears[k].out, false));
        const double c = 0.05 + 0.1 * rnd();
        std::vector<OptOption> opts;
        for (const auto& idx : r.optionIdx) {
            int64_t tb = 0;
            for (size_t k = 0; k < idx.size(); ++k)
                tb += bits[k][idx[k]];
            const double bpw = static_cast<double>(tb) / static_cast<double>(m.numel());
            // Every table entry is a 2..8-bit setting: its bpw incl. scales and permutation stays in that
            // range (a loose check that the shapes reached totalBits the right way round).
            QVERIFY2(bpw > 2.0 && bpw < 8.6, qPrintable(QString("%1: %2 bpw").arg(m.key.c_str()).arg(bpw)));
            opts.push_back({tb, c * std::pow(2.0, -bpw)});
        }
        QCOMPARE(static_cast<int>(opts.size()), m.attn ? 19 : 17);
        int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
        for (const auto& o : opts) {
            lo = std::min(lo, o.bits);
            hi = std::max(hi, o.bits);
        }
        minBits += lo;
        maxBits += hi;
        mods.push_back(std::move(opts));
    }
    QCOMPARE(mods.size(), size_t(64));
    const double minBpw = static_cast<double>(minBits) / static_cast<double>(numel);
    const double maxBpw = static_cast<double>(maxBits) / static_cast<double>(numel);
    qInfo("Llama-2-7B shape: %lld decoder weights, reachable %.4f .. %.4f bpw", static_cast<long long>(numel),
          minBpw, maxBpw);
    QVERIFY(minBpw < 2.5);  // every target below is above the cheapest combination (2.21 bpw)
    QVERIFY(maxBpw > 8.02); // and 8.0 is not at the top of the range: the bound is a real test there

    // The pipeline's parameters (ExportParams → OptimizeParams) except two, so that 9 targets take seconds:
    //   * 20 proposals per temperature instead of 1000 (quantzoo-cli --anneal-iterations 20);
    //   * no exact step (exactFrontMax = 0). On this input its Pareto front outgrows the default 200000
    //     entries for 8 of the 9 targets, so the step is abandoned after ~3 s each and the annealed choice
    //     stands, the same answer as without it; 2.5 bpw, where it completes, is checked with it below.
    auto check = [&](double target, size_t exactFrontMax, bool* exact) {
        OptimizeParams p;
        p.budget = static_cast<int64_t>(static_cast<double>(numel) * target);
        p.seed = 5;
        p.iterations = 20;
        p.exactFrontMax = exactFrontMax;
        auto r = optimizeStrategy(mods, p);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QCOMPARE(r->choice.size(), mods.size());
        const int64_t got = bitsOf(mods, r->choice); // recounted here, not the optimizer's figure
        QCOMPARE(r->bits, got);
        QVERIFY(got <= p.budget);
        const double achieved = static_cast<double>(got) / static_cast<double>(numel);
        qInfo("target %.2f bpw: achieved %.5f bpw (%+.5f), norm %.3f, exact step %s", target, achieved,
              achieved - target, r->norm, r->exact ? "done" : "not run");
        QVERIFY2(std::abs(achieved - target) <= 0.02,
                 qPrintable(QString("target %1: achieved %2 bpw").arg(target).arg(achieved, 0, 'f', 5)));
        // Deterministic with the seed.
        auto again = optimizeStrategy(mods, p);
        QVERIFY(again.ok());
        QCOMPARE(again->choice, r->choice);
        QCOMPARE(again->norm, r->norm);
        QCOMPARE(again->bits, r->bits);
        *exact = r->exact;
    };
    QElapsedTimer t;
    t.start();
    bool exact = false;
    for (double target : {2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0}) {
        check(target, 0, &exact);
        if (QTest::currentTestFailed()) return;
    }
    qInfo("9 targets, each optimized twice: %lld ms", static_cast<long long>(t.elapsed()));
    t.restart();
    check(2.5, OptimizeParams().exactFrontMax, &exact);
    if (QTest::currentTestFailed()) return;
    QVERIFY(exact);
    qInfo("2.5 bpw with the exact step, twice: %lld ms", static_cast<long long>(t.elapsed()));
    // Below the cheapest combination the optimizer refuses (the pipeline reports it).
    OptimizeParams low;
    low.budget = minBits - 1;
    low.iterations = 20;
    low.exactFrontMax = 0;
    QVERIFY(!optimizeStrategy(mods, low).ok());
}

QTEST_GUILESS_MAIN(TestExl2Optimize)
#include "test_exl2_optimize.moc"
