#include "export/target_size.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#include "common/fp16.h"
#include "convert/hf_to_gguf.h"
#include "ggml/dequantize.h"
#include "ggml/imatrix.h"
#include "ggml/iquants.h"
#include "ggml/mixes.h"
#include "ggml/quantize.h"
#include "infer/evaluate.h"

namespace qz {

namespace {

uint64_t pad32(uint64_t n) {
    return (n + 31) / 32 * 32;
}

Status calibrateWithKld(const Model& model, SensitivityTable& table, const SensitivityParams& params,
                        const ProgressFn& progress);

// llama-quantize refuses these targets without importance weights (core/ggml/README-iquants.md).
bool needsImportance(DType t) {
    switch (t) {
    case DType::IQ3_XXS:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ1_M:
    case DType::IQ1_S:
        return true;
    default:
        return ggml::iquantRequiresImatrix(t);
    }
}

} // namespace

std::optional<uint64_t> parseByteSize(std::string_view text) {
    std::string s;
    for (char c : text)
        if (!std::isspace(static_cast<unsigned char>(c)))
            s.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.'))
        ++i;
    if (i == 0 || i > 30) return std::nullopt;
    const std::string num = s.substr(0, i), unit = s.substr(i);
    if (std::count(num.begin(), num.end(), '.') > 1 || num == ".") return std::nullopt;
    double v = 0;
    try {
        v = std::stod(num);
    } catch (...) {
        return std::nullopt;
    }
    double mult = 0;
    static const std::pair<const char*, double> units[] = {{"", 1},
                                                           {"B", 1},
                                                           {"K", 1e3},
                                                           {"KB", 1e3},
                                                           {"M", 1e6},
                                                           {"MB", 1e6},
                                                           {"G", 1e9},
                                                           {"GB", 1e9},
                                                           {"T", 1e12},
                                                           {"TB", 1e12},
                                                           {"KIB", 1024.0},
                                                           {"MIB", 1048576.0},
                                                           {"GIB", 1073741824.0},
                                                           {"TIB", 1099511627776.0}};
    for (const auto& [u, m] : units)
        if (unit == u) mult = m;
    if (mult == 0) return std::nullopt;
    const double bytes = std::floor(v * mult);
    if (!(bytes >= 1) || bytes > 9.0e18) return std::nullopt;
    return static_cast<uint64_t>(bytes);
}

// ---------------------------------------------------------------------------------------------------
// Multiple-choice knapsack.

Result<KnapsackResult> solveMultipleChoice(const std::vector<std::vector<KnapsackOption>>& items,
                                           uint64_t budget) {
    const size_t n = items.size();
    for (size_t i = 0; i < n; ++i)
        if (items[i].empty()) return makeError("item " + std::to_string(i) + " has no option");
    // Per item: the Pareto front (cost up, loss strictly down) and its lower convex hull.
    std::vector<std::vector<size_t>> front(n), hull(n);
    for (size_t i = 0; i < n; ++i) {
        const auto& opts = items[i];
        std::vector<size_t> idx(opts.size());
        std::iota(idx.begin(), idx.end(), size_t(0));
        std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
            if (opts[a].cost != opts[b].cost) return opts[a].cost < opts[b].cost;
            return opts[a].loss < opts[b].loss;
        });
        for (size_t k : idx)
            if (front[i].empty() || opts[k].loss < opts[front[i].back()].loss) front[i].push_back(k);
        auto& h = hull[i];
        for (size_t k : front[i]) {
            // Remove the last hull point while it lies on or above the segment from its predecessor to k.
            while (h.size() >= 2) {
                const auto& a = opts[h[h.size() - 2]];
                const auto& b = opts[h.back()];
                const auto& c = opts[k];
                const double s1 = (a.loss - b.loss) / static_cast<double>(b.cost - a.cost);
                const double s2 = (b.loss - c.loss) / static_cast<double>(c.cost - b.cost);
                if (s2 >= s1)
                    h.pop_back();
                else
                    break;
            }
            h.push_back(k);
        }
    }
    KnapsackResult r;
    r.choice.resize(n);
    std::vector<size_t> frontPos(n, 0); // position of the current choice in front[i]
    uint64_t cost = 0;
    for (size_t i = 0; i < n; ++i) {
        r.choice[i] = front[i][0];
        const uint64_t c = items[i][front[i][0]].cost;
        if (c > std::numeric_limits<uint64_t>::max() - cost) return makeError("sizes overflow");
        cost += c;
    }
    if (cost > budget) return makeError("the budget is below the smallest possible size");

    // Lagrangian greedy: hull steps in order of loss saved per byte (convexity keeps each item's steps
    // in order).
    struct Step {
        size_t item, to;
        uint64_t dcost;
        double dloss, slope;
    };
    std::vector<Step> steps;
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 1; k < hull[i].size(); ++k) {
            const auto& a = items[i][hull[i][k - 1]];
            const auto& b = items[i][hull[i][k]];
            steps.push_back({i, hull[i][k], b.cost - a.cost, a.loss - b.loss,
                             (a.loss - b.loss) / static_cast<double>(b.cost - a.cost)});
        }
    std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
        if (a.slope != b.slope) return a.slope > b.slope;
        if (a.item != b.item) return a.item < b.item;
        return a.to < b.to;
    });
    double loss = 0;
    for (size_t i = 0; i < n; ++i)
        loss += items[i][r.choice[i]].loss;
    r.lowerBound = loss;
    bool blocked = false;
    for (const Step& s : steps) {
        if (blocked) break;
        if (s.dcost <= budget - cost) {
            cost += s.dcost;
            loss -= s.dloss;
            r.choice[s.item] = s.to;
            r.lowerBound = loss;
        } else {
            // The LP optimum takes this step fractionally.
            r.lowerBound = loss - s.slope * static_cast<double>(budget - cost);
            blocked = true;
        }
    }
    for (size_t i = 0; i < n; ++i)
        frontPos[i] =
            static_cast<size_t>(std::find(front[i].begin(), front[i].end(), r.choice[i]) - front[i].begin());

    // Fill: the best improving move (one item changed, or one item one front step down and another up)
    // that fits, until none improves.
    const double eps = 1e-12;
    for (int iter = 0; iter < 100000; ++iter) {
        const uint64_t left = budget - cost;
        double bestGain = 0;
        size_t bi = n, bk = 0, bj = n, bl = 0;
        for (size_t i = 0; i < n; ++i) {
            const auto& cur = items[i][r.choice[i]];
            for (size_t p = frontPos[i] + 1; p < front[i].size(); ++p) {
                const auto& o = items[i][front[i][p]];
                if (o.cost - cur.cost > left) break;
                const double g = cur.loss - o.loss;
                if (g > bestGain + eps * std::max(1.0, std::fabs(loss))) {
                    bestGain = g;
                    bi = i, bk = p, bj = n;
                }
            }
        }
        for (size_t j = 0; j < n; ++j) { // j steps down its front, freeing bytes, and i steps up
            const auto& curJ = items[j][r.choice[j]];
            for (size_t q = 0; q < frontPos[j]; ++q) {
                const auto& downJ = items[j][front[j][q]];
                const uint64_t freed = curJ.cost - downJ.cost;
                const double lossUp = downJ.loss - curJ.loss;
                if (freed > std::numeric_limits<uint64_t>::max() - left) continue;
                for (size_t i = 0; i < n; ++i) {
                    if (i == j) continue;
                    const auto& cur = items[i][r.choice[i]];
                    for (size_t p = frontPos[i] + 1; p < front[i].size(); ++p) {
                        const auto& o = items[i][front[i][p]];
                        if (o.cost - cur.cost > left + freed) break;
                        const double g = cur.loss - o.loss - lossUp;
                        if (g > bestGain + eps * std::max(1.0, std::fabs(loss))) {
                            bestGain = g;
                            bi = i, bk = p, bj = j, bl = q;
                        }
                    }
                }
            }
        }
        if (bi == n) break;
        auto apply = [&](size_t i, size_t p) {
            cost = cost - items[i][r.choice[i]].cost + items[i][front[i][p]].cost;
            loss = loss - items[i][r.choice[i]].loss + items[i][front[i][p]].loss;
            r.choice[i] = front[i][p];
            frontPos[i] = p;
        };
        if (bj != n) apply(bj, bl);
        apply(bi, bk);
    }
    r.cost = cost;
    r.loss = 0;
    for (size_t i = 0; i < n; ++i)
        r.loss += items[i][r.choice[i]].loss; // summed afresh, no drift
    r.lowerBound = std::min(r.lowerBound, r.loss);
    return r;
}

// ---------------------------------------------------------------------------------------------------
// Sensitivity.

std::vector<DType> defaultTargetCandidates() {
    return {DType::IQ1_S,  DType::IQ1_M,   DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
            DType::Q2_K,   DType::IQ3_XXS, DType::IQ3_S,   DType::Q3_K,   DType::IQ4_XS,
            DType::IQ4_NL, DType::Q4_0,    DType::Q4_1,    DType::Q4_K,   DType::Q5_0,
            DType::Q5_1,   DType::Q5_K,    DType::Q6_K,    DType::Q8_0,   DType::F16};
}

std::string tensorRole(const std::string& name) {
    if (name == "token_embd.weight") return "token_embd";
    if (name == "output.weight") return "output";
    for (const char* r :
         {"attn_qkv", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
        const std::string key = std::string(".") + r + ".";
        const std::string keyExps = std::string(".") + r + "_exps.";
        if (name.find(key) != std::string::npos || name.find(keyExps) != std::string::npos) return r;
    }
    return "other";
}

double roleWeight(const std::string& role, int nLayer) {
    // KL-divergence per unit of relative weighted error when one tensor of this role is quantized,
    // measured on bard-llama (4 layers; bench_target_proxy, core/export/README.md A). A decoder
    // layer's share is taken to shrink as 1/nLayer (the measured figures are for 4 layers); the
    // embeddings and the output layer are one per model.
    struct W {
        const char* role;
        double w;
        bool perLayer;
    };
    static const W table[] = {{"attn_q", 1.02e-2, true},      {"attn_k", 1.29e-2, true},
                              {"attn_v", 1.58e-2, true},      {"attn_qkv", 1.30e-2, true},
                              {"attn_output", 1.57e-2, true}, {"ffn_gate", 2.88e-2, true},
                              {"ffn_up", 1.50e-2, true},      {"ffn_down", 3.68e-2, true},
                              {"token_embd", 1.58e-1, false}, {"output", 4.94e-1, false}};
    const double layerScale = nLayer > 0 ? 4.0 / nLayer : 1.0;
    for (const auto& e : table)
        if (role == e.role) return e.perLayer ? e.w * layerScale : e.w;
    return 2.0e-2 * layerScale; // other matrices: about the mean of the decoder roles
}

Result<SensitivityTable> measureSensitivity(const Model& model, const SensitivityParams& params,
                                            const ProgressFn& progress) {
    SensitivityTable table;
    table.imatrixPath = params.imatrixPath;
    ggml::Imatrix imatrix;
    if (!params.imatrixPath.empty()) {
        auto im = ggml::loadImatrix(params.imatrixPath);
        if (!im) return im.error();
        imatrix = std::move(*im);
    }
    // The exporter's own plan tells which tensors are quantizable and the bytes nothing changes.
    GgufExportParams dry;
    dry.type = "Q8_0";
    dry.pure = true;
    dry.dryRun = true;
    dry.imatrixPath = params.imatrixPath;
    auto plan = exportGguf(model, dry, {});
    if (!plan) return plan.error();
    table.parameters = plan->parameters;
    uint64_t variable = 0;
    std::vector<std::string> names;
    int nLayer = 0;
    for (const auto& t : plan->tensors)
        if (t.name.rfind("blk.", 0) == 0) nLayer = std::max(nLayer, std::atoi(t.name.c_str() + 4) + 1);
    for (const auto& t : plan->tensors) {
        TargetTensor tt;
        tt.name = t.name;
        tt.ne = t.ne;
        tt.quantizable = t.quantizable;
        tt.role = tensorRole(t.name);
        tt.roleWeight = params.unitRoleWeights ? 1.0 : roleWeight(tt.role, nLayer);
        if (t.quantizable) {
            variable += pad32(t.bytesAfter);
            names.push_back(t.name);
        } else {
            tt.fixedType = t.to;
            tt.fixedBytes = t.bytesAfter;
            table.fixedRawBytes += t.bytesAfter;
        }
        table.tensors.push_back(std::move(tt));
    }
    table.headerAndFixedBytes = plan->fileBytes - variable;
    // Tied embeddings: without output.weight, token_embd.weight is the output layer too.
    const bool tied = std::none_of(table.tensors.begin(), table.tensors.end(),
                                   [](const TargetTensor& t) { return t.name == "output.weight"; });
    if (tied && !params.unitRoleWeights)
        for (auto& t : table.tensors)
            if (t.role == "token_embd") {
                t.role = "token_embd (tied output)";
                t.roleWeight = roleWeight("token_embd", nLayer) + roleWeight("output", nLayer);
            }

    const std::vector<DType> cands =
        params.candidates.empty() ? defaultTargetCandidates() : params.candidates;
    uint64_t totalWork = 0;
    for (const auto& t : table.tensors)
        if (t.quantizable) totalWork += 1;
    const bool calibrate = !params.kldText.empty();
    auto scaled = [&](double from, double to) -> ProgressFn {
        if (!progress) return {};
        return [&progress, from, to](const ProgressInfo& p) {
            return progress({from + p.fraction * (to - from), p.step});
        };
    };
    ProgressTracker tracker(calibrate ? scaled(0, 0.3) : progress, static_cast<double>(totalWork));
    size_t cursor = 0;
    std::vector<float> sample, deq, imp;
    std::vector<uint8_t> bytes;
    auto st = forEachGgufTensor(
        model, names,
        [&](const std::string& name, const std::vector<int64_t>& ne,
            const std::vector<float>& values) -> Status {
            while (cursor < table.tensors.size() && table.tensors[cursor].name != name)
                ++cursor;
            if (cursor == table.tensors.size()) return makeError("tensor order changed: " + name);
            TargetTensor& tt = table.tensors[cursor];
            if (!tracker.advance(0, name)) return cancelledError();
            const int64_t ne0 = ne.empty() ? 1 : ne[0];
            if (ne0 <= 0) return makeError(name + ": empty rows");
            const int64_t rows = static_cast<int64_t>(values.size()) / ne0;
            const int64_t ne1 = ne.size() > 1 ? ne[1] : 1;
            const int64_t ne2 =
                ne.size() > 2 ? static_cast<int64_t>(values.size()) / (ne0 * std::max<int64_t>(1, ne1)) : 1;
            const float* imatAll = nullptr;
            if (!params.imatrixPath.empty()) {
                auto look = imatrix.lookup(name, ne0, ne2);
                if (!look) return look.error();
                imatAll = *look;
            }
            tt.hasImatrix = imatAll != nullptr;
            // Evenly spaced sample rows, grouped by matrix (expert) so each group has one importance vector.
            const int64_t want = params.sampleRows > 0 ? std::min<int64_t>(params.sampleRows, rows) : rows;
            std::vector<int64_t> pick(static_cast<size_t>(want));
            for (int64_t i = 0; i < want; ++i)
                pick[static_cast<size_t>(i)] = static_cast<int64_t>((static_cast<__int128>(i) * rows) / want);
            const double scale = static_cast<double>(rows) / static_cast<double>(want);
            sample.resize(static_cast<size_t>(want * ne0));
            for (int64_t i = 0; i < want; ++i)
                std::copy_n(values.data() + pick[static_cast<size_t>(i)] * ne0, ne0, sample.data() + i * ne0);
            auto impOf = [&](int64_t row) -> const float* {
                if (!imatAll) return nullptr;
                const int64_t m = ne1 > 0 ? row / ne1 : 0;
                return imatAll + std::min(m, ne2 - 1) * ne0;
            };
            // groups of consecutive sample rows with the same matrix
            std::vector<std::pair<int64_t, int64_t>> groups; // [begin, end) in sample rows
            for (int64_t i = 0; i < want; ++i)
                if (groups.empty() || impOf(pick[static_cast<size_t>(i)]) !=
                                          impOf(pick[static_cast<size_t>(groups.back().first)]))
                    groups.push_back({i, i + 1});
                else
                    groups.back().second = i + 1;
            double energy = 0;
            for (const auto& [b, e] : groups) {
                const float* im = impOf(pick[static_cast<size_t>(b)]);
                for (int64_t r = b; r < e; ++r)
                    for (int64_t j = 0; j < ne0; ++j) {
                        const double w = sample[static_cast<size_t>(r * ne0 + j)];
                        energy += (im ? im[j] : 1.0) * w * w;
                    }
            }
            tt.energy = energy * scale;
            const uint64_t numel = static_cast<uint64_t>(values.size());
            for (DType type : cands) {
                if (!ggml::canQuantizeTo(type) && type != DType::F16 && type != DType::BF16 &&
                    type != DType::F32)
                    continue;
                if (ne0 % static_cast<int64_t>(traits(type).blockSize) != 0) continue;
                if (needsImportance(type) && !imatAll) continue;
                auto whole = bytesFor(type, numel);
                auto rowBytes = bytesFor(type, static_cast<uint64_t>(ne0));
                if (!whole || !rowBytes) continue;
                TargetCandidate c;
                c.type = type;
                c.bytes = *whole;
                double err = 0;
                deq.resize(static_cast<size_t>(ne0));
                for (const auto& [b, e] : groups) {
                    const float* im = impOf(pick[static_cast<size_t>(b)]);
                    bytes.resize(static_cast<size_t>((e - b) * static_cast<int64_t>(*rowBytes)));
                    if (auto q = ggml::quantizeTensor(type, sample.data() + b * ne0, e - b, ne0, im,
                                                      bytes.data(), params.threads);
                        !q)
                        return Error{name + ": " + q.error().message, false};
                    for (int64_t r = b; r < e; ++r) {
                        const uint8_t* row = bytes.data() + (r - b) * static_cast<int64_t>(*rowBytes);
                        if (type == DType::F16 || type == DType::BF16) {
                            for (int64_t j = 0; j < ne0; ++j) {
                                uint16_t h;
                                std::memcpy(&h, row + 2 * j, 2);
                                deq[static_cast<size_t>(j)] =
                                    type == DType::F16 ? fp16ToFp32(h) : bf16ToFp32(h);
                            }
                        } else if (type == DType::F32) {
                            std::memcpy(deq.data(), row, static_cast<size_t>(ne0) * 4);
                        } else if (!ggml::dequantize(type, row, deq.data(), ne0)) {
                            return makeError(name + ": cannot dequantize " + std::string(dtypeName(type)));
                        }
                        for (int64_t j = 0; j < ne0; ++j) {
                            const double d = static_cast<double>(sample[static_cast<size_t>(r * ne0 + j)]) -
                                             deq[static_cast<size_t>(j)];
                            err += (im ? im[j] : 1.0) * d * d;
                        }
                    }
                }
                c.weightedError = err * scale;
                c.loss = tt.energy > 0 ? tt.roleWeight * c.weightedError / tt.energy : 0;
                tt.candidates.push_back(c);
            }
            if (tt.candidates.empty())
                return makeError(name + ": no candidate type fits its rows of " + std::to_string(ne0));
            if (!tracker.advance(1, name)) return cancelledError();
            return okStatus();
        });
    if (!st) return st.error();
    for (const auto& t : table.tensors)
        if (t.quantizable && t.candidates.empty()) return makeError(t.name + ": not measured");
    if (!params.kldText.empty())
        if (auto c = calibrateWithKld(model, table, params, scaled(0.3, 1)); !c) return c.error();
    return table;
}

namespace {

// The values of GGUF tensor `name` quantized to `type` and back, in the model's own layout and under its
// own name (what Engine overrides replace). Rows are quantized independently, so quantizing the rows of
// a Q/K tensor before or after convert's row permutation gives the same rows.
Status fakeQuantizeInModelLayout(const Model& model, const ConversionPlan* plan, const std::string& name,
                                 DType type, const ggml::Imatrix& imatrix, bool haveImatrix,
                                 std::string& modelName, std::vector<float>& out) {
    const TensorInfo* info = nullptr;
    bool transpose = false;
    int64_t ne0 = 0;
    if (!plan) {
        info = model.find(name);
        if (!info) return makeError(name + ": not in the model");
        ne0 = info->cols();
    } else {
        const PlannedTensor* p = nullptr;
        for (const auto& t : plan->tensors)
            if (t.ggufName == name) p = &t;
        if (!p || !p->generated.empty() || !p->stacked.empty() || p->ne.size() != 2)
            return makeError(name + ": cannot be measured alone");
        info = &model.tensors[p->source];
        transpose = p->transform == TensorTransform::Transpose;
        ne0 = p->ne[0];
    }
    modelName = info->name;
    auto v = readTensorF32(model, *info);
    if (!v) return v.error();
    const int64_t total = static_cast<int64_t>(v->size());
    if (ne0 <= 0 || total % ne0 != 0) return makeError(name + ": unexpected shape");
    const int64_t rows = total / ne0;
    std::vector<float> rowsMajor;
    if (transpose) { // stored [ne0][rows]: make rows of ne0 values
        rowsMajor.resize(v->size());
        for (int64_t i = 0; i < ne0; ++i)
            for (int64_t r = 0; r < rows; ++r)
                rowsMajor[static_cast<size_t>(r * ne0 + i)] = (*v)[static_cast<size_t>(i * rows + r)];
    } else {
        rowsMajor = std::move(*v);
    }
    const float* imp = nullptr;
    if (haveImatrix) {
        auto look = imatrix.lookup(name, ne0);
        if (!look) return look.error();
        imp = *look;
    }
    auto bytes = bytesFor(type, static_cast<uint64_t>(total));
    if (!bytes) return makeError(name + ": " + std::string(dtypeName(type)) + " does not fit");
    std::vector<uint8_t> q(*bytes);
    if (auto st = ggml::quantizeTensor(type, rowsMajor.data(), rows, ne0, imp, q.data(), 0); !st)
        return st.error();
    std::vector<float> deq(static_cast<size_t>(total));
    if (!ggml::dequantize(type, q.data(), deq.data(), total)) return makeError(name + ": cannot dequantize");
    if (transpose) {
        out.resize(deq.size());
        for (int64_t i = 0; i < ne0; ++i)
            for (int64_t r = 0; r < rows; ++r)
                out[static_cast<size_t>(i * rows + r)] = deq[static_cast<size_t>(r * ne0 + i)];
    } else {
        out = std::move(deq);
    }
    return okStatus();
}

Status calibrateWithKld(const Model& model, SensitivityTable& table, const SensitivityParams& params,
                        const ProgressFn& progress) {
    ggml::Imatrix imatrix;
    if (!params.imatrixPath.empty()) {
        auto im = ggml::loadImatrix(params.imatrixPath);
        if (!im) return im.error();
        imatrix = std::move(*im);
    }
    std::optional<ConversionPlan> plan;
    if (model.format != ModelFormat::Gguf) {
        auto p = planHfToGguf(model);
        if (!p) return p.error();
        plan = std::move(*p);
    }
    EvalParams ev;
    ev.nCtx = params.kldCtx;
    ev.nChunks = params.kldChunks;
    ev.threads = params.threads;
    KldBase base;
    size_t n = 0;
    for (const auto& t : table.tensors)
        n += t.quantizable;
    ProgressTracker tracker(progress, static_cast<double>(n + 1));
    if (!tracker.advance(0, "base logits")) return cancelledError();
    if (auto r = evaluatePerplexity(model, params.kldText, ev, {}, nullptr, &base); !r) return r.error();
    if (!tracker.advance(1, "base logits")) return cancelledError();
    for (auto& t : table.tensors) {
        if (!t.quantizable) continue;
        // The reference type: Q3_K, else the candidate nearest 3.5 bits per weight.
        const TargetCandidate* ref = nullptr;
        for (const auto& c : t.candidates)
            if (c.type == DType::Q3_K) ref = &c;
        if (!ref)
            for (const auto& c : t.candidates)
                if (!ref ||
                    std::fabs(bitsPerWeight(c.type) - 3.5) < std::fabs(bitsPerWeight(ref->type) - 3.5))
                    ref = &c;
        if (!ref || ref->weightedError <= 0 || t.energy <= 0) continue;
        std::string modelName;
        WeightOverrides ov;
        std::vector<float> values;
        if (auto st = fakeQuantizeInModelLayout(model, plan ? &*plan : nullptr, t.name, ref->type, imatrix,
                                                !params.imatrixPath.empty(), modelName, values);
            !st)
            return Error{st.error().message, st.error().cancelled};
        ov[modelName] = std::move(values);
        auto k = evaluateKlDivergence(model, base, ev, {}, &ov);
        if (!k) return k.error();
        t.measuredKld = k->meanKld;
        t.kldType = ref->type;
        if (std::isfinite(k->meanKld) && k->meanKld > 0) {
            t.roleWeight = k->meanKld / (ref->weightedError / t.energy);
            for (auto& c : t.candidates)
                c.loss = t.roleWeight * c.weightedError / t.energy;
        }
        if (!tracker.advance(1, t.name)) return cancelledError();
    }
    return okStatus();
}

} // namespace

// ---------------------------------------------------------------------------------------------------
// Plans.

Result<TargetPlan> chooseTargetPlan(const SensitivityTable& table, const TargetSpec& target) {
    const bool bySize = target.fileBytes > 0;
    if (!bySize && !(target.bitsPerWeight > 0 && target.bitsPerWeight < 64))
        return makeError("give a target size in bytes or a target of bits per weight between 0 and 64");
    std::vector<std::vector<KnapsackOption>> items;
    std::vector<size_t> itemTensor;
    for (size_t i = 0; i < table.tensors.size(); ++i) {
        const auto& t = table.tensors[i];
        if (!t.quantizable) continue;
        std::vector<KnapsackOption> opts;
        for (const auto& c : t.candidates)
            opts.push_back({bySize ? pad32(c.bytes) : c.bytes, c.loss});
        items.push_back(std::move(opts));
        itemTensor.push_back(i);
    }
    TargetPlan plan;
    uint64_t budget = 0;
    if (bySize) {
        if (target.fileBytes < table.headerAndFixedBytes)
            return makeError("the target size is below the header and the tensors that stay unquantized (" +
                             std::to_string(table.headerAndFixedBytes) + " bytes)");
        budget = target.fileBytes - table.headerAndFixedBytes;
        plan.budget = target.fileBytes;
    } else {
        const double dataBytes = target.bitsPerWeight * static_cast<double>(table.parameters) / 8.0;
        if (dataBytes < static_cast<double>(table.fixedRawBytes))
            return makeError("the target bits per weight is below what the unquantized tensors take");
        budget = static_cast<uint64_t>(std::floor(dataBytes)) - table.fixedRawBytes;
        plan.budget = static_cast<uint64_t>(std::floor(dataBytes));
    }
    auto sol = solveMultipleChoice(items, budget);
    if (!sol) {
        uint64_t least = 0;
        for (const auto& it : items) {
            uint64_t m = UINT64_MAX;
            for (const auto& o : it)
                m = std::min(m, o.cost);
            least += m;
        }
        const uint64_t minFile = bySize ? table.headerAndFixedBytes + least : 0;
        if (bySize)
            return makeError("the target size is too small: the smallest file with these types has " +
                             std::to_string(minFile) + " bytes");
        return makeError("the target bits per weight is too small: the smallest types give " +
                         std::to_string(8.0 * static_cast<double>(least + table.fixedRawBytes) /
                                        static_cast<double>(std::max<uint64_t>(1, table.parameters))));
    }
    plan.predictedLoss = sol->loss;
    plan.lowerBound = sol->lowerBound;
    uint64_t raw = 0, file = table.headerAndFixedBytes;
    size_t item = 0;
    std::vector<std::pair<DType, uint64_t>> byType;
    for (size_t i = 0; i < table.tensors.size(); ++i) {
        const auto& t = table.tensors[i];
        TargetTensorChoice c;
        c.name = t.name;
        if (!t.quantizable) {
            c.type = t.fixedType;
            c.bytes = t.fixedBytes;
            raw += c.bytes;
        } else {
            const auto& cand = t.candidates[sol->choice[item++]];
            c.type = cand.type;
            c.bytes = cand.bytes;
            c.loss = cand.loss;
            c.chosen = true;
            raw += c.bytes;
            file += pad32(c.bytes);
            auto it =
                std::find_if(byType.begin(), byType.end(), [&](const auto& p) { return p.first == c.type; });
            if (it == byType.end())
                byType.push_back({c.type, c.bytes});
            else
                it->second += c.bytes;
        }
        plan.tensors.push_back(std::move(c));
    }
    plan.fileBytes = file;
    plan.bitsPerWeight =
        table.parameters ? 8.0 * static_cast<double>(raw) / static_cast<double>(table.parameters) : 0;
    // general.file_type: the standard K mix nearest in bits per weight (the type with most bytes
    // decides too often on tiny models); informative only, every tensor's type is explicit.
    struct Ft {
        const char* name;
        double bpw;
    };
    static const Ft fts[] = {{"Q2_K", 2.9},   {"Q3_K_S", 3.5}, {"Q3_K_M", 3.9}, {"Q3_K_L", 4.3},
                             {"Q4_K_S", 4.6}, {"Q4_K_M", 4.9}, {"Q5_K_S", 5.5}, {"Q5_K_M", 5.7},
                             {"Q6_K", 6.6},   {"Q8_0", 8.5}};
    double best = 1e30;
    for (const auto& f : fts)
        if (std::fabs(f.bpw - plan.bitsPerWeight) < best) {
            best = std::fabs(f.bpw - plan.bitsPerWeight);
            plan.fileType = f.name;
        }
    return plan;
}

std::string exactNameRegex(const std::string& name) {
    std::string re = "^";
    for (char c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') re.push_back('\\');
        re.push_back(c);
    }
    return re + "$";
}

GgufExportParams targetExportParams(const TargetPlan& plan, const SensitivityTable& table,
                                    const GgufExportParams& base) {
    GgufExportParams p;
    p.outputPath = base.outputPath;
    p.dryRun = base.dryRun;
    p.threads = base.threads;
    p.kvOverrides = base.kvOverrides;  // gguf-split parts and metadata overrides as the caller set them
    p.splitMaxBytes = base.splitMaxBytes;
    p.splitMaxTensors = base.splitMaxTensors;
    p.imatrixPath = table.imatrixPath;
    p.type = plan.fileType;
    for (const auto& t : plan.tensors)
        if (t.chosen) p.overrides.push_back({exactNameRegex(t.name), t.type});
    return p;
}

Result<std::vector<MixPoint>> standardMixPoints(const Model& model, const SensitivityTable& table) {
    std::vector<MixPoint> out;
    std::vector<std::string> mixes = {"Q2_K",   "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
                                      "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",   "Q8_0"};
    if (!table.imatrixPath.empty())
        for (const char* m :
             {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS"})
            mixes.emplace_back(m);
    for (const auto& m : mixes) {
        GgufExportParams p;
        p.type = m;
        p.dryRun = true;
        p.imatrixPath = table.imatrixPath;
        auto r = exportGguf(model, p, {});
        if (!r) continue; // a mix this model cannot have (e.g. an IQ type without an entry)
        MixPoint pt;
        pt.name = m;
        pt.fileBytes = r->fileBytes;
        pt.bitsPerWeight = r->bitsPerWeight;
        double loss = 0;
        for (const auto& t : r->tensors) {
            auto it = std::find_if(table.tensors.begin(), table.tensors.end(),
                                   [&](const TargetTensor& x) { return x.name == t.name; });
            if (it == table.tensors.end() || !it->quantizable) continue;
            auto c = std::find_if(it->candidates.begin(), it->candidates.end(),
                                  [&](const TargetCandidate& x) { return x.type == t.to; });
            if (c == it->candidates.end()) {
                loss = std::numeric_limits<double>::quiet_NaN();
                break;
            }
            loss += c->loss;
        }
        pt.predictedLoss = loss;
        out.push_back(pt);
    }
    return out;
}

} // namespace qz
