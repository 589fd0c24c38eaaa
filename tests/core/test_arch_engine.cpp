// The inference engine on the newer architectures (qwen3, qwen3moe, mixtral, gemma2, gemma3, phi3) with
// the tiny seeded models of tests/core/tiny_archs.h. Expected logits come from tests/tools/ref_forward.py,
// an independent numpy (float64) forward pass written from transformers' modeling code that reads the
// HF folder itself; it runs at test time (/usr/bin/python3 with numpy). The engine runs in plain F32
// (kvF16, ggmlGelu and ggmlActivations off) on 48 tokens, more than the Gemma models' sliding window of 32, so the
// window and both layer kinds are exercised. Checked per architecture:
//   * the HF folder: every position's logits within 1e-4 of the largest reference logit of the row;
//   * the same split over two eval() calls (KV cache, sliding window across the cache);
//   * our F32 GGUF export of the folder (stacked experts, Gemma's +1 norms, fused phi3 tensors, llama's
//     permuted Q/K for mixtral, the metadata llama.cpp reads): the same logits;
//   * embed + forwardLayer + head equals eval(), and the observer sees every expert's routed tokens;
//   * imatrix per expert (llama-imatrix's layout for 3-D tensors): the HF folder and its GGUF give the same
//     sums and counts, every token is counted in exactly top-k experts, and the written file reads back
//     through ggml/imatrix.h as [nIn × nExpert] importances;
//   * GPTQ quantizes GPTQModel's modules (phi3's fused ones whole; MoE: attention and every expert's
//     gate/up/down, not the router) with a smaller Hessian-weighted output error than round-to-nearest on
//     every layer; each expert is calibrated on its routed tokens only (per block they sum to top-k x the
//     calibration tokens), and with few tokens on the layer's averaged expert Hessian; a Hessian budget
//     (experts observed in chunks) writes the same files.
//   * transformers v5's fused experts (core/io/README.md F.3): the MoE models written with each layer's
//     experts in mlp.experts.gate_up_proj [E, 2F, H] / down_proj [E, H, F] (and mixtral's router as
//     mlp.gate) open as the per-expert tensors, byte for byte, and give the per-expert layout's logits bit
//     for bit, and the same GGUF conversion; inconsistent fused tensors are refused with the folder named.
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "convert/hf_to_gguf.h"
#include "export/gguf_export.h"
#include "ggml/imatrix.h"
#include "gptq/gptq_export.h"
#include "infer/engine.h"
#include "infer/imatrix_collect.h"
#include "model/model.h"
#include "tiny_archs.h"
#include "time_scale.h"

using namespace qz;
using namespace qztest;

namespace {

constexpr int kTokens = 48;

// A safetensors file written byte by byte (F32 tensors, in the order given): the fixture for layouts our
// writer never produces.
struct RawTensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> values;
};
void writeRawSafetensors(const std::string& path, const std::vector<RawTensor>& tensors) {
    std::string header = "{\"__metadata__\":{\"format\":\"pt\"}", data;
    for (const auto& t : tensors) {
        header += ",\"" + t.name + "\":{\"dtype\":\"F32\",\"shape\":[";
        for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
        header += "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
                  std::to_string(data.size() + 4 * t.values.size()) + "]}";
        data.append(reinterpret_cast<const char*>(t.values.data()), 4 * t.values.size());
    }
    header += "}";
    while (header.size() % 8) header += ' ';
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((uint64_t(header.size()) >> (8 * i)) & 0xFF);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << bytes << header << data;
}

// The tiny MoE model's tensors in transformers v5's fused layout: per layer, the experts' gate and up rows
// stacked as [E, 2F, H] (expert e: its F gate rows, then its F up rows) and their down weights as [E, H, F];
// mixtral's router named mlp.gate. Values are tinyValues of the per-expert tensors. dropDown: the last
// layer's down_proj lacks its last expert (an inconsistent file).
std::vector<RawTensor> fusedExpertTensors(const std::string& arch, bool dropDown = false) {
    const TinyDims d = tinyDims(arch);
    const bool mixtral = arch == "mixtral";
    const int64_t F = mixtral ? d.ffn : d.expertFf, H = d.hidden, E = d.experts;
    std::map<std::string, std::vector<float>> per;
    std::vector<RawTensor> out;
    for (const auto& t : tinyTensors(arch)) {
        if (t.name.find(".experts.") != std::string::npos) {
            per[t.name] = tinyValues(arch, t);
            continue;
        }
        std::string name = t.name;
        if (mixtral && name.find(".block_sparse_moe.gate.") != std::string::npos)
            name.replace(name.find(".block_sparse_moe."), 18, ".mlp.");
        out.push_back({name, t.shape, tinyValues(arch, t)});
    }
    for (int64_t l = 0; l < d.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const std::string ex = p + (mixtral ? "block_sparse_moe.experts." : "mlp.experts.");
        RawTensor gu{p + "mlp.experts.gate_up_proj", {E, 2 * F, H}, {}}, dn{p + "mlp.experts.down_proj", {E, H, F}, {}};
        for (int64_t e = 0; e < E; ++e) {
            const std::string x = ex + std::to_string(e) + ".";
            for (const char* part : {mixtral ? "w1" : "gate_proj", mixtral ? "w3" : "up_proj"}) {
                const auto& v = per.at(x + part + ".weight");
                gu.values.insert(gu.values.end(), v.begin(), v.end());
            }
            if (dropDown && l + 1 == d.layers && e + 1 == E) continue;
            const auto& v = per.at(x + (mixtral ? "w2" : "down_proj") + ".weight");
            dn.values.insert(dn.values.end(), v.begin(), v.end());
        }
        if (dropDown && l + 1 == d.layers) dn.shape[0] = E - 1;
        out.push_back(std::move(gu));
        out.push_back(std::move(dn));
    }
    return out;
}

QString python() { return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

std::vector<int32_t> testTokens(int vocab) {
    std::vector<int32_t> t(kTokens);
    uint32_t s = 12345;
    for (auto& v : t) {
        s = s * 1103515245u + 12345u;
        v = static_cast<int32_t>((s >> 8) % static_cast<uint32_t>(vocab));
    }
    return t;
}

// ref_forward.py --logits on the folder: [kTokens × vocab] float64.
bool referenceLogits(const std::string& dir, const std::vector<int32_t>& tokens, std::vector<double>& out,
                     QString& err) {
    const std::string tokPath = dir + "/tokens.json", outPath = dir + "/ref.f64";
    {
        std::ofstream f(tokPath);
        f << "[";
        for (size_t i = 0; i < tokens.size(); ++i) f << (i ? ", " : "") << tokens[i];
        f << "]\n";
    }
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    const QString script = QString(QZ_TEST_DATA) + "/../tools/ref_forward.py";
    p.start(python(), {script, "--logits", QString::fromStdString(dir), QString::fromStdString(tokPath),
                       QString::fromStdString(outPath)});
    if (!p.waitForFinished(scaledMs(120000)) || p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0) {
        err = "ref_forward.py failed: " + QString::fromUtf8(p.readAll());
        return false;
    }
    std::ifstream f(outPath, std::ios::binary | std::ios::ate);
    const auto bytes = static_cast<size_t>(f.tellg());
    out.resize(bytes / sizeof(double));
    f.seekg(0);
    f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(bytes));
    return static_cast<bool>(f);
}

// Largest |engine − reference| of each row relative to the row's largest |reference|; returns the worst.
double worstRelative(const std::vector<float>& got, const std::vector<double>& ref, int vocab, int rowFrom = 0) {
    double worst = 0;
    const int rows = static_cast<int>(got.size()) / vocab;
    for (int r = 0; r < rows; ++r) {
        double mx = 0, diff = 0;
        for (int v = 0; v < vocab; ++v) {
            const double want = ref[static_cast<size_t>(r + rowFrom) * vocab + v];
            mx = std::max(mx, std::abs(want));
            const double g = got[static_cast<size_t>(r) * vocab + v];
            diff = std::max(diff, std::isfinite(g) ? std::abs(g - want) : INFINITY);
        }
        worst = std::max(worst, diff / mx);
    }
    return worst;
}

EngineOptions plainF32() {
    EngineOptions o;
    o.kvF16 = false;
    o.ggmlGelu = false;
    o.ggmlActivations = false;
    o.threads = 2;
    o.nCtx = 64;
    return o;
}

}  // namespace

class TestArchEngine : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QProcess chk;
        chk.start(python(), {"-c", "import numpy"});
        QVERIFY(chk.waitForFinished(scaledMs(60000)));
        QVERIFY2(chk.exitStatus() == QProcess::NormalExit && chk.exitCode() == 0,
                 "python3 cannot import numpy (apt-get install python3-numpy)");
    }

    void logitsMatchReference_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<QString>("from");  // config.json edit (empty: none)
        QTest::addColumn<QString>("to");
        for (const auto& a : tinyArchNames()) QTest::newRow(a.c_str()) << QString::fromStdString(a) << "" << "";
        // Gemma 3's linear RoPE scaling on the global layer 5 (GGUF: rope.scaling.*, applied by llama.cpp to
        // the global layers only), Phi-3 with partial rotary dims, the multimodal Gemma 3 layouts.
        for (const auto& a : tinyVariantNames()) QTest::newRow(a.c_str()) << QString::fromStdString(a) << "" << "";
        // Gemma 3 with a global layer: layer 1 attends to everything with the global RoPE base (the
        // converter does not write the pattern and llama.cpp assumes 6, so the HF folder only).
        QTest::newRow("gemma3 pattern 2") << "gemma3" << "\"sliding_window_pattern\": 6"
                                          << "\"sliding_window_pattern\": 2";
        // Qwen3-MoE without renormalised top-k weights (norm_topk_prob false, transformers' default).
        QTest::newRow("qwen3moe no renorm") << "qwen3moe" << "\"norm_topk_prob\": true"
                                            << "\"norm_topk_prob\": false";
    }
    void logitsMatchReference() {
        QFETCH(QString, arch);
        QFETCH(QString, from);
        QFETCH(QString, to);
        const std::string a = arch.toStdString();
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        auto st = writeTinyModel(dir, a, QZ_TEST_DATA);
        QVERIFY2(st, st ? "" : st.error().message.c_str());
        const bool edited = !from.isEmpty();
        if (edited) {
            std::string cfg = tinyConfig(a);
            const auto at = cfg.find(from.toStdString());
            QVERIFY(at != std::string::npos);
            cfg.replace(at, from.size(), to.toStdString());
            std::ofstream(dir + "/config.json") << cfg;
        }
        const int vocab = static_cast<int>(tinyDims(a).vocab);
        const auto tokens = testTokens(vocab);
        std::vector<double> ref;
        QString err;
        QVERIFY2(referenceLogits(dir, tokens, ref, err), qPrintable(err));
        QCOMPARE(ref.size(), static_cast<size_t>(kTokens) * vocab);

        auto m = openModel(dir);
        QVERIFY2(m, m ? "" : m.error().message.c_str());
        auto eng = Engine::load(**m, plainF32());
        QVERIFY2(eng, eng ? "" : eng.error().message.c_str());
        Engine& e = **eng;
        QCOMPARE(e.nVocab(), vocab);
        std::vector<float> logits(static_cast<size_t>(kTokens) * vocab);
        QVERIFY(e.eval(tokens, 0, logits.data()));
        const double hfRel = worstRelative(logits, ref, vocab);
        qInfo("%s HF folder: worst relative logit error %.3g", a.c_str(), hfRel);
        QVERIFY2(hfRel <= 1e-4, qPrintable(QString("HF: %1").arg(hfRel)));

        // The same over two calls: 20 tokens, then 28 more reading the cache.
        e.reset();
        std::vector<float> part(static_cast<size_t>(28) * vocab);
        QVERIFY(e.eval(std::span(tokens).first(20), 0, nullptr));
        QVERIFY(e.eval(std::span(tokens).subspan(20), 20, part.data()));
        const double splitRel = worstRelative(part, ref, vocab, 20);
        QVERIFY2(splitRel <= 1e-4, qPrintable(QString("split eval: %1").arg(splitRel)));

        // Layer by layer (calibration path) equals eval(); the observer sees the experts' routed tokens.
        const int d = e.hparams().nEmbd;
        std::vector<float> states(static_cast<size_t>(kTokens) * d);
        QVERIFY(e.embed(tokens, 0, states));
        std::map<std::string, int64_t> seen;
        LinearObserver obs = [&](const std::string& name, const float*, int64_t n, int64_t) { seen[name] += n; };
        for (int l = 0; l < e.hparams().nLayer; ++l) QVERIFY(e.forwardLayer(l, states, 0, obs));
        std::vector<float> viaLayers(logits.size());
        QVERIFY(e.head(states, viaLayers.data()));
        QCOMPARE(viaLayers, logits);
        const TinyDims td = tinyDims(a);
        if (td.experts > 0) {
            const std::string moe = a == "mixtral" ? "block_sparse_moe." : "mlp.";
            const std::string gate = a == "mixtral" ? "w1.weight" : "gate_proj.weight";
            const std::string down = a == "mixtral" ? "w2.weight" : "down_proj.weight";
            for (int l = 0; l < td.layers; ++l) {
                const std::string p = "model.layers." + std::to_string(l) + "." + moe;
                QCOMPARE(seen[p + "gate.weight"], int64_t{kTokens});
                int64_t routed = 0;
                for (int x = 0; x < td.experts; ++x) {
                    const std::string ex = p + "experts." + std::to_string(x) + ".";
                    QCOMPARE(seen[ex + gate], seen[ex + down]);
                    routed += seen[ex + gate];
                }
                QCOMPARE(routed, int64_t{kTokens} * td.expertsUsed);  // every token reaches top-k experts
            }
        }

        if (edited) return;  // the GGUF keeps llama.cpp's fixed behaviour, not the edit
        // Our F32 GGUF export runs to the same logits.
        GgufExportParams p;
        p.outputPath = tmp.filePath("out.gguf").toStdString();
        p.type = "F32";
        auto r = exportGguf(**m, p, {}, {});
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        auto g = openModel(p.outputPath);
        QVERIFY2(g, g ? "" : g.error().message.c_str());
        auto ge = Engine::load(**g, plainF32());
        QVERIFY2(ge, ge ? "" : ge.error().message.c_str());
        std::vector<float> glogits(logits.size());
        QVERIFY((*ge)->eval(tokens, 0, glogits.data()));
        const double ggufRel = worstRelative(glogits, ref, vocab);
        qInfo("%s F32 GGUF export: worst relative logit error %.3g", a.c_str(), ggufRel);
        QVERIFY2(ggufRel <= 1e-4, qPrintable(QString("GGUF: %1").arg(ggufRel)));
    }

    void imatrixPerExpert_data() {
        QTest::addColumn<QString>("arch");
        QTest::newRow("qwen3moe") << QString("qwen3moe");
        QTest::newRow("mixtral") << QString("mixtral");
    }
    void imatrixPerExpert() {
        QFETCH(QString, arch);
        const std::string a = arch.toStdString();
        const TinyDims td = tinyDims(a);
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, a, QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        GgufExportParams ep;
        ep.outputPath = tmp.filePath("out.gguf").toStdString();
        ep.type = "F32";
        QVERIFY(exportGguf(**m, ep, {}, {}));
        auto g = openModel(ep.outputPath);
        QVERIFY(g);
        std::ifstream tf(std::string(QZ_TEST_DATA) + "/text/shakespeare-valid.txt");
        const std::string text((std::istreambuf_iterator<char>(tf)), std::istreambuf_iterator<char>());
        ImatrixParams ip;
        ip.nCtx = 32;
        ip.nChunks = 3;
        ip.threads = 2;
        auto hf = computeImatrix(**m, text, ip);
        QVERIFY2(hf, hf ? "" : hf.error().message.c_str());
        auto gg = computeImatrix(**g, text, ip);
        QVERIFY2(gg, gg ? "" : gg.error().message.c_str());
        QCOMPARE(hf->entries.size(), gg->entries.size());
        const int64_t f = a == "mixtral" ? td.ffn : td.expertFf;
        for (int l = 0; l < td.layers; ++l) {
            const std::string b = "blk." + std::to_string(l) + ".";
            QVERIFY(hf->entries.count(b + "ffn_gate_inp.weight"));
            QCOMPARE(hf->entries.at(b + "ffn_gate_inp.weight").count, int64_t{3 * 32});
            for (const char* kind : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"}) {
                const std::string name = b + kind;
                QVERIFY2(hf->entries.count(name) && gg->entries.count(name), name.c_str());
                const ImatrixEntry& h = hf->entries.at(name);
                const ImatrixEntry& q = gg->entries.at(name);
                const int64_t nIn = std::string(kind) == "ffn_down_exps.weight" ? f : td.hidden;
                QCOMPARE(h.expertCounts.size(), static_cast<size_t>(td.experts));
                QCOMPARE(h.sum2.size(), static_cast<size_t>(nIn * td.experts));
                QCOMPARE(h.expertCounts, q.expertCounts);
                int64_t total = 0;
                for (int64_t c : h.expertCounts) total += c;
                QCOMPARE(total, int64_t{3 * 32} * td.expertsUsed);
                for (size_t i = 0; i < h.sum2.size(); ++i)
                    QVERIFY(std::abs(h.sum2[i] - q.sum2[i]) <= 1e-5 * std::max(1.0, std::abs(h.sum2[i])));
            }
        }
        const std::string path = tmp.filePath("imatrix.gguf").toStdString();
        QVERIFY(writeImatrixGguf(*hf, path));
        auto im = ggml::loadImatrix(path);
        QVERIFY2(im, im ? "" : im.error().message.c_str());
        const std::string name = "blk.1.ffn_down_exps.weight";
        auto vals = im->lookup(name, f, td.experts);
        QVERIFY2(vals && *vals, "expert imatrix entry not found with [nIn, nExpert]");
        const ImatrixEntry& h = hf->entries.at(name);
        for (int64_t x = 0; x < td.experts; ++x)
            for (int64_t j = 0; j < f; j += 17) {
                const size_t i = static_cast<size_t>(x * f + j);
                const double want = h.expertCounts[x] > 0 ? h.sum2[i] / h.expertCounts[x] : 1.0;
                QVERIFY(std::abs((*vals)[i] - want) <= 1e-5 * std::max(1.0, want));
            }
    }

    void gptqDenseFamilies_data() {
        QTest::addColumn<QString>("arch");
        for (const char* a : {"qwen3", "gemma2", "gemma3", "phi3", "qwen3moe", "mixtral"}) QTest::newRow(a) << a;
    }
    void gptqDenseFamilies() {
        QFETCH(QString, arch);
        const std::string a = arch.toStdString();
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, a, QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 128;
        p.quant.threads = 2;
        p.rtnBaseline = true;
        p.writeOutput = false;
        p.calibPath = std::string(QZ_TEST_DATA) + "/text/shakespeare-valid.txt";
        p.calib.samples = 8;
        p.calib.seqLen = 48;
        const TinyDims td = tinyDims(a);
        // 8 x 48 tokens: an expert gets ~96 (mixtral) to ~192 (qwen3moe), below the default threshold of
        // 4 x 256 columns; a threshold of 150 makes some of them use their own Hessians.
        if (td.experts > 0) p.expertMinTokens = 150;
        auto r = gptq::exportGptq(**m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        const size_t perBlock = a == "phi3" ? 4 : td.experts > 0 ? 4 + 3 * static_cast<size_t>(td.experts) : 7;
        QCOMPARE(r->layers.size(), perBlock * static_cast<size_t>(td.layers));
        std::map<int, int64_t> routed;  // block -> Σ tokens of the experts' gate layers
        int fallbacks = 0;
        for (const auto& L : r->layers) {
            QVERIFY(L.name.find(".gate.") == std::string::npos);  // the router stays unquantized
            if (td.experts > 0 && L.expert >= 0) {
                QCOMPARE(L.fallback, L.tokens < 150);
                fallbacks += L.fallback;
                if (L.name.find("gate_proj") != std::string::npos || L.name.find(".w1.") != std::string::npos)
                    routed[L.block] += L.tokens;
            }
            QVERIFY2(L.relErr >= 0 && L.relErrRtn > 0, L.name.c_str());
            QVERIFY2(L.relErr < L.relErrRtn, qPrintable(QString("%1: gptq %2 rtn %3")
                                                             .arg(QString::fromStdString(L.name))
                                                             .arg(L.relErr)
                                                             .arg(L.relErrRtn)));
        }
        if (a == "phi3") QCOMPARE(r->layers[0].name, std::string("model.layers.0.self_attn.qkv_proj.weight"));
        if (td.experts > 0) {
            QCOMPARE(static_cast<int64_t>(routed.size()), td.layers);
            for (const auto& [b, n] : routed) QCOMPARE(n, td.expertsUsed * p.calib.samples * p.calib.seqLen);
            QCOMPARE(r->expertLayersFallback, fallbacks);
            QVERIFY2(fallbacks > 0 && fallbacks < static_cast<int>(3 * td.experts * td.layers),
                     qPrintable(QString("%1 expert layers fell back").arg(fallbacks)));
        }
    }

    // An MoE export cancelled in the middle of block 0's experts resumes to the same files: the experts
    // finished before the interruption are loaded, and the averaged expert Hessian of the fallback is
    // still built from all experts of the group.
    void gptqMoeCancelResume() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "mixtral", QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 128;
        p.quant.threads = 2;
        p.calibPath = std::string(QZ_TEST_DATA) + "/text/shakespeare-valid.txt";
        p.calib.samples = 8;
        p.calib.seqLen = 48;
        p.expertMinTokens = 100;  // ~96 tokens per expert: some fall back, some not
        p.outputDir = tmp.filePath("full").toStdString();
        auto full = gptq::exportGptq(**m, p);
        QVERIFY2(full, full ? "" : full.error().message.c_str());
        QVERIFY2(full->expertsFallback > 0 && full->expertsFallback < 16,
                 qPrintable(QString("%1 experts fell back").arg(full->expertsFallback)));
        p.outputDir = tmp.filePath("resumed").toStdString();
        int layers = 0;
        bool stop = false;
        auto cancelled = gptq::exportGptq(
            **m, p, [&](const ProgressInfo&) { return !stop; },
            [&](const gptq::LayerReport&) {
                if (++layers == 9) stop = true;  // q, k, v, o and 5 of the 16 expert gate/up layers
            });
        QVERIFY(!cancelled && cancelled.error().cancelled);
        auto resumed = gptq::exportGptq(**m, p);
        QVERIFY2(resumed, resumed ? "" : resumed.error().message.c_str());
        QCOMPARE(resumed->resumedLayers, 9);
        QCOMPARE(resumed->expertsFallback, full->expertsFallback);
        QCOMPARE(resumed->expertLayersFallback, full->expertLayersFallback);
        auto readAll = [](const std::string& f) {
            std::ifstream in(f, std::ios::binary);
            return std::string(std::istreambuf_iterator<char>(in), {});
        };
        for (const auto& f : full->files)
            QVERIFY2(readAll(tmp.filePath("full").toStdString() + "/" + f) ==
                         readAll(tmp.filePath("resumed").toStdString() + "/" + f),
                     f.c_str());
        // The router is copied as it is; modules_in_block_to_quantize lists the block's 28 modules.
        auto back = openModel(tmp.filePath("full").toStdString());
        QVERIFY(back);
        QVERIFY((*back)->find("model.layers.1.block_sparse_moe.gate.weight"));
        QVERIFY((*back)->find("model.layers.1.block_sparse_moe.experts.7.w2.qweight"));
        const auto qc = nlohmann::json::parse(readAll(tmp.filePath("full").toStdString() + "/quantize_config.json"));
        size_t listed = 0;
        for (const auto& g : qc.at("modules_in_block_to_quantize")) listed += g.size();
        QCOMPARE(listed, size_t(28));
    }

    // An expert no calibration token reaches: AutoGPTQ would write a zero weight (every column dead); we
    // quantize it on the averaged expert Hessian even with the threshold at 0, and report no error for it.
    // A Hessian budget (ExportParams::maxHessianMemory, the CLI's --max-memory) observes a group's experts
    // in chunks, one calibration pass each; the fallback layers wait for their group's complete average and
    // observe their own Hessian again. Mixtral (8 experts, in = 256 for gate/up and down) with a budget of
    // two experts' Hessians: 4 chunks per expert group, and the written files, every layer's error, tokens
    // and fallback equal the unbounded run's; also when the chunked run is cancelled among the experts and
    // resumed.
    void gptqMoeHessianBudget() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "mixtral", QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 128;
        p.quant.threads = 2;
        p.rtnBaseline = true;
        p.calibPath = std::string(QZ_TEST_DATA) + "/text/shakespeare-valid.txt";
        p.calib.samples = 8;
        p.calib.seqLen = 48;
        p.expertMinTokens = 100;  // ~96 tokens per expert: some fall back, some not
        p.outputDir = tmp.filePath("full").toStdString();
        auto full = gptq::exportGptq(**m, p);
        QVERIFY2(full, full ? "" : full.error().message.c_str());
        QVERIFY(full->expertLayersFallback > 0 && full->expertLayersFallback < 48);
        QCOMPARE(full->hessianChunks, 0);
        QCOMPARE(full->peakHessianBytes, uint64_t{8} * 256 * 256 * 4);  // a group's 8 experts at once
        const uint64_t budget = uint64_t{2} * 256 * 256 * 4;
        p.maxHessianMemory = budget;
        p.outputDir = tmp.filePath("bounded").toStdString();
        auto bounded = gptq::exportGptq(**m, p);
        QVERIFY2(bounded, bounded ? "" : bounded.error().message.c_str());
        QCOMPARE(bounded->hessianChunks, 4);
        QCOMPARE(bounded->peakHessianBytes, budget);
        QVERIFY(bounded->calibrationPasses > full->calibrationPasses);
        QCOMPARE(bounded->layers.size(), full->layers.size());
        for (size_t i = 0; i < full->layers.size(); ++i) {
            const auto &a = full->layers[i], &b = bounded->layers[i];
            QCOMPARE(b.name, a.name);
            QCOMPARE(b.tokens, a.tokens);
            QCOMPARE(b.fallback, a.fallback);
            QCOMPARE(b.relErr, a.relErr);
            QCOMPARE(b.relErrRtn, a.relErrRtn);
        }
        auto readAll = [](const std::string& f) {
            std::ifstream in(f, std::ios::binary);
            return std::string(std::istreambuf_iterator<char>(in), {});
        };
        auto sameFiles = [&](const std::string& other) {
            for (const auto& f : full->files)
                if (readAll(tmp.filePath("full").toStdString() + "/" + f) != readAll(other + "/" + f)) return false;
            return !full->files.empty();
        };
        QVERIFY(sameFiles(tmp.filePath("bounded").toStdString()));
        p.outputDir = tmp.filePath("resumed").toStdString();
        int layers = 0;
        bool stop = false;
        auto cancelled = gptq::exportGptq(
            **m, p, [&](const ProgressInfo&) { return !stop; },
            [&](const gptq::LayerReport&) {
                if (++layers == 9) stop = true;  // q, k, v, o and 5 expert gate/up layers
            });
        QVERIFY(!cancelled && cancelled.error().cancelled);
        auto resumed = gptq::exportGptq(**m, p);
        QVERIFY2(resumed, resumed ? "" : resumed.error().message.c_str());
        QVERIFY(resumed->resumedLayers >= 9);
        QCOMPARE(resumed->expertLayersFallback, full->expertLayersFallback);
        QVERIFY(sameFiles(tmp.filePath("resumed").toStdString()));
    }

    void gptqMoeUnroutedExpert() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "mixtral", QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        gptq::ExportParams p;
        p.quant.threads = 2;
        p.calibPath = std::string(QZ_TEST_DATA) + "/text/shakespeare-valid.txt";
        p.calib.samples = 1;
        p.calib.seqLen = 3;  // 3 tokens x top-2: at most 6 of the 8 experts of a block see any
        p.expertMinTokens = 0;
        p.writeOutput = false;
        p.keepOverrides = true;
        auto r = gptq::exportGptq(**m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        int unrouted = 0;
        for (const auto& L : r->layers) {
            if (L.expert < 0) continue;
            QCOMPARE(L.fallback, L.tokens == 0);
            if (L.tokens != 0) continue;
            ++unrouted;
            QCOMPARE(L.relErr, -1.0);
            const auto& w = r->overrides.at(L.name);
            const TinyTensor t{L.name, {L.out, L.in}};
            const auto orig = tinyValues("mixtral", t);
            double dot = 0, nw = 0, no = 0;
            for (size_t i = 0; i < w.size(); ++i) dot += w[i] * orig[i], nw += w[i] * w[i], no += orig[i] * orig[i];
            QVERIFY2(nw > 0 && dot / std::sqrt(nw * no) > 0.9, L.name.c_str());  // a 4-bit copy, not zeros
        }
        QVERIFY(unrouted >= 2 * 3 * 2);  // at least 2 experts x 3 layers in each of the 2 blocks
        QVERIFY(r->expertsFallback >= 4);
    }

    // Experts in the file that config.json does not route to (or the reverse) are refused before any work.
    void gptqMoeExpertCountMismatch() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "qwen3moe", QZ_TEST_DATA));
        std::string cfg = tinyConfig("qwen3moe");
        const std::string from = "\"num_experts\": 4", to = "\"num_experts\": 3";
        cfg.replace(cfg.find(from), from.size(), to);
        std::ofstream(dir + "/config.json") << cfg;
        auto m = openModel(dir);
        QVERIFY(m);
        gptq::ExportParams p;
        p.calibPath = std::string(QZ_TEST_DATA) + "/text/shakespeare-valid.txt";
        p.writeOutput = false;
        auto r = gptq::exportGptq(**m, p);
        QVERIFY(!r);
        QVERIFY2(r.error().message.find("4 experts per layer") != std::string::npos &&
                     r.error().message.find(dir) != std::string::npos,
                 r.error().message.c_str());
    }

    // Hostile configurations are refused with a message naming the folder, not run.
    void refusesBadConfigs_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<QString>("from");
        QTest::addColumn<QString>("to");
        QTest::newRow("top-k above experts") << "qwen3moe" << "\"num_experts_per_tok\": 2" << "\"num_experts_per_tok\": 5";
        QTest::newRow("no experts") << "mixtral" << "\"num_local_experts\": 8" << "\"num_local_experts\": 0";
        QTest::newRow("dense layers in qwen3moe") << "qwen3moe" << "\"mlp_only_layers\": []" << "\"mlp_only_layers\": [1]";
        QTest::newRow("layer_types short") << "gemma3" << "\"sliding_window_pattern\": 6"
                                           << "\"layer_types\": [\"sliding_attention\"]";
        QTest::newRow("rotary factor") << "phi3" << "\"partial_rotary_factor\": 1.0" << "\"partial_rotary_factor\": 1.5";
        QTest::newRow("negative softcap") << "gemma2" << "\"attn_logit_softcapping\": 50.0"
                                          << "\"attn_logit_softcapping\": -1.0";
        QTest::newRow("zero query scalar") << "gemma2" << "\"query_pre_attn_scalar\": 16" << "\"query_pre_attn_scalar\": 0";
    }
    void refusesBadConfigs() {
        QFETCH(QString, arch);
        QFETCH(QString, from);
        QFETCH(QString, to);
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, arch.toStdString(), QZ_TEST_DATA));
        std::string cfg = tinyConfig(arch.toStdString());
        const auto at = cfg.find(from.toStdString());
        QVERIFY(at != std::string::npos);
        cfg.replace(at, from.size(), to.toStdString());
        std::ofstream(dir + "/config.json") << cfg;
        auto m = openModel(dir);
        QVERIFY2(m, m ? "" : m.error().message.c_str());  // opening does not run the model
        auto e = Engine::load(**m, plainF32());
        QVERIFY(!e);
        QVERIFY2(e.error().message.find(dir) != std::string::npos, e.error().message.c_str());
    }

    // setWeight on one HF expert changes only that expert (the stacked storage's offsets).
    void fusedExperts_data() {
        QTest::addColumn<QString>("arch");
        QTest::newRow("qwen3moe") << "qwen3moe";
        QTest::newRow("mixtral") << "mixtral";
    }

    void fusedExperts() {
        QFETCH(QString, arch);
        const std::string a = arch.toStdString();
        QTemporaryDir tmp;
        const std::string perDir = tmp.filePath("per-expert").toStdString(), fusedDir = tmp.filePath("fused").toStdString();
        QVERIFY(writeTinyModel(perDir, a, QZ_TEST_DATA));
        QVERIFY(writeTinyModel(fusedDir, a, QZ_TEST_DATA)); // config and tokenizer; the weights replaced:
        writeRawSafetensors(fusedDir + "/model.safetensors", fusedExpertTensors(a));
        auto per = openModel(perDir), fused = openModel(fusedDir);
        QVERIFY(per);
        QVERIFY2(fused, fused ? "" : fused.error().message.c_str());
        // The same tensors under the same names, byte for byte (the fused tensors are gone).
        QCOMPARE((*fused)->tensors.size(), (*per)->tensors.size());
        for (const auto& t : (*per)->tensors) {
            const TensorInfo* f = (*fused)->find(t.name);
            QVERIFY2(f, t.name.c_str());
            QCOMPARE(f->shape, t.shape);
            QCOMPARE(int(f->dtype), int(t.dtype));
            const auto x = (*per)->rawBytes(t), y = (*fused)->rawBytes(*f);
            QVERIFY2(x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0, t.name.c_str());
        }
        // The engine's logits: the per-expert layout's, bit for bit.
        auto ep = Engine::load(**per, plainF32()), ef = Engine::load(**fused, plainF32());
        QVERIFY(ep);
        QVERIFY2(ef, ef ? "" : ef.error().message.c_str());
        const int vocab = (*ep)->nVocab();
        const auto tokens = testTokens(vocab);
        std::vector<float> lp(static_cast<size_t>(kTokens) * vocab), lf(lp.size());
        QVERIFY((*ep)->eval(tokens, 0, lp.data()));
        QVERIFY((*ef)->eval(tokens, 0, lf.data()));
        QVERIFY(std::memcmp(lp.data(), lf.data(), lp.size() * sizeof(float)) == 0);
        // The GGUF conversion: the same tensors (experts stacked into ffn_*_exps) with the same values.
        auto pp = planHfToGguf(**per), pf = planHfToGguf(**fused);
        QVERIFY(pp && pf);
        QCOMPARE(pf->tensors.size(), pp->tensors.size());
        for (size_t i = 0; i < pp->tensors.size(); ++i) {
            QCOMPARE(pf->tensors[i].ggufName, pp->tensors[i].ggufName);
            std::vector<float> vp, vf;
            QVERIFY(produceTensor(**per, *pp, pp->tensors[i], vp));
            QVERIFY(produceTensor(**fused, *pf, pf->tensors[i], vf));
            QVERIFY2(vp.size() == vf.size() && std::memcmp(vp.data(), vf.data(), vp.size() * 4) == 0,
                     pp->tensors[i].ggufName.c_str());
        }
        // A down_proj with one expert fewer than gate_up_proj: refused, naming the folder and the tensors.
        writeRawSafetensors(fusedDir + "/model.safetensors", fusedExpertTensors(a, true));
        auto bad = openModel(fusedDir);
        QVERIFY(!bad);
        QVERIFY2(bad.error().message.find(fusedDir) != std::string::npos &&
                     bad.error().message.find("mlp.experts.gate_up_proj") != std::string::npos,
                 bad.error().message.c_str());
    }

    void setWeightOnOneExpert() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "qwen3moe", QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        auto eng = Engine::load(**m, plainF32());
        QVERIFY(eng);
        Engine& e = **eng;
        const int vocab = e.nVocab();
        const auto tokens = testTokens(vocab);
        std::vector<float> before(static_cast<size_t>(kTokens) * vocab), after(before.size());
        QVERIFY(e.eval(tokens, 0, before.data()));
        const std::string name = "model.layers.1.mlp.experts.2.down_proj.weight";
        QVERIFY(e.hasWeight(name));
        const TinyDims td = tinyDims("qwen3moe");
        std::vector<float> zero(static_cast<size_t>(td.hidden * td.expertFf), 0.0f);
        QVERIFY(e.setWeight(name, zero));
        QVERIFY(e.eval(tokens, 0, after.data()));
        QVERIFY(before != after);
        // Restoring the seeded values restores the logits bit for bit.
        for (const auto& t : tinyTensors("qwen3moe"))
            if (t.name == name) QVERIFY(e.setWeight(name, tinyValues("qwen3moe", t)));
        QVERIFY(e.eval(tokens, 0, after.data()));
        QCOMPARE(after, before);
    }
};

QTEST_GUILESS_MAIN(TestArchEngine)
#include "test_arch_engine.moc"
