// EXL2 export of the newer architectures exllamav2 0.3.2 converts (core/exl2/README.md E.8): tiny seeded
// qwen3, phi3, gemma2, mixtral and qwen3moe models (tiny_archs.h), measured on 4 × 128 tokens and quantized
// on 8 × 128 tokens of shakespeare-train at 6.0 bpw. For each:
//   * the modules evaluated one after the other as the exporter evaluates them (each residual half of a
//     block with its weights installed, then the head) reproduce the engine's whole-model logits;
//   * tests/exl2/read_check.py --keys (the independent reader, with exllamav2's key rules per
//     architecture) decodes every quantized layer to our dequantized weights, finds every other tensor at
//     its fp16 value, every key exllamav2's loader expects present, every decoder linear (and an untied
//     head) quantized under exllamav2's names (phi3: q/k/v and gate/up split out of the fused tensors,
//     which are absent), and nothing else; each quantized layer approximates (5 % relative) the model rows
//     exllamav2 reads it from (phi3: the fused tensors' row ranges, computed in the test);
//   * measurement.json has exllamav2's module keys (self_attn, mlp or block_sparse_moe with w1/w3/w2);
//   * the achieved bpw is at most the target and within 0.25 of it (4 modules only), and equals the bits
//     of the written q_* tensors;
//   * the dequantized model's perplexity on shakespeare-valid (ctx 64, 8 chunks) is within 1 % of the
//     original's (measured: 0.08 .. 0.3 %) and its logits within 10 % relative RMS (measured 1 .. 4 %;
//     the mixtures of experts 20 %: a few tokens change experts, measured 6 % and 12 %);
// gemma3 (text-only: exllamav2 0.3.2 has no Gemma3ForCausalLM) is refused with the supported list.
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fp16.h"
#include "exl2/exl2_export.h"
#include "exl2/exl2_measure.h"
#include "infer/engine.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "io/safetensors_writer.h"
#include "model/model.h"
#include "tiny_archs.h"

using namespace qz;
using namespace qz::exl2;
namespace fs = std::filesystem;

namespace {
const std::string kData = QZ_TEST_DATA;

std::string readAll(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

EngineOptions plainF32(const WeightOverrides* ov = nullptr) {
    EngineOptions eo;
    eo.kvF16 = false;
    eo.ggmlGelu = false;
    eo.ggmlActivations = false;
    eo.overrides = ov;
    return eo;
}
} // namespace

class TestExl2Archs : public QObject {
    Q_OBJECT
  private slots:
    void exportArch_data();
    void exportArch();
    void refusesGemma3Text();
};

void TestExl2Archs::exportArch_data() {
    QTest::addColumn<QString>("arch");
    for (const char* a : {"qwen3", "phi3", "gemma2", "mixtral", "qwen3moe"}) QTest::newRow(a) << QString(a);
}

void TestExl2Archs::exportArch() {
    QFETCH(QString, arch);
    const std::string a = arch.toStdString();
    QTemporaryDir tmp;
    const std::string dir = tmp.filePath("model").toStdString();
    auto st = qztest::writeTinyModel(dir, a, kData);
    QVERIFY2(st, st ? "" : st.error().message.c_str());
    auto mr = openModel(dir);
    QVERIFY2(mr, mr ? "" : mr.error().message.c_str());
    const Model& model = **mr;
    auto plan = planModel(model);
    QVERIFY2(plan, plan ? "" : plan.error().message.c_str());

    // 1. The modules one after the other, as the exporter runs them, against the engine's logits.
    auto valid = tokenizeForPerplexity(model, readAll(kData + "/text/shakespeare-valid.txt"));
    QVERIFY(valid.ok());
    const int nTok = 96;
    const std::vector<int32_t> win(valid->tokens.begin(), valid->tokens.begin() + nTok);
    {
        auto runner = ModuleRunner::create(model, *plan, 0, nTok);
        QVERIFY2(runner, runner ? "" : runner.error().message.c_str());
        auto x = (*runner)->embed({win});
        QVERIFY(x.ok());
        States s = std::move(*x), y;
        for (const auto& mod : plan->modules) {
            auto w = readModuleWeights(model, mod);
            QVERIFY(w.ok());
            auto f = (*runner)->forward(mod, *w, s, &y);
            QVERIFY2(f, f ? "" : f.error().message.c_str());
            (*runner)->release(mod);
            std::swap(s, y);
        }
        auto eng = Engine::load(model, plainF32());
        QVERIFY(eng.ok());
        const int nV = (*eng)->nVocab();
        std::vector<float> ref(static_cast<size_t>(nTok) * nV), got(ref.size());
        QVERIFY((*eng)->eval(win, 0, ref.data()).ok());
        QVERIFY((*eng)->head(s.data, got.data()).ok());
        double d2 = 0, r2 = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
            d2 += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
            r2 += static_cast<double>(ref[i]) * ref[i];
        }
        qInfo("%s: modules vs engine: relative RMS %.3g", a.c_str(), std::sqrt(d2 / r2));
        QVERIFY(r2 > 0);
        QVERIFY2(std::sqrt(d2 / r2) < 1e-5, "the modules one by one differ from the engine's forward");
    }

    // 2. The export.
    ExportParams p;
    p.calibPath = kData + "/text/shakespeare-train.txt";
    p.measureCalib = {4, 128, 1};
    p.quantCalib = {8, 128, 1};
    p.seed = 1;
    p.annealIterations = 20;
    p.targetBpw = 6.0;
    p.keepOverrides = true;
    p.outputDir = tmp.filePath("exl2").toStdString();
    auto r = exportExl2(model, p);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    size_t nLinears = 0;
    for (const auto& m : plan->modules) nLinears += m.linears.size();
    QCOMPARE(r->layers.size(), nLinears + (plan->head.out > 0 ? 1 : 0));

    // measurement.json: exllamav2's module keys and slot names.
    const auto mj = nlohmann::json::parse(readAll(p.outputDir + "/measurement.json"));
    const bool moe = plan->hp.nExpert > 0;
    for (int l = 0; l < plan->hp.nLayer; ++l) {
        const std::string lp = "model.layers." + std::to_string(l);
        QVERIFY(mj["measurement"].contains(lp + ".self_attn"));
        const std::string ffn = lp + (moe ? ".block_sparse_moe" : ".mlp");
        QVERIFY2(mj["measurement"].contains(ffn), ffn.c_str());
        for (const char* slot : moe ? std::vector<const char*>{"w1", "w3", "w2"}
                                    : std::vector<const char*>{"gate_proj", "up_proj", "down_proj"})
            QVERIFY2(mj["measurement"][ffn][0].contains(slot), slot);
    }
    const auto cfg = nlohmann::json::parse(readAll(p.outputDir + "/config.json"));
    QCOMPARE(cfg["quantization_config"]["quant_method"].get<std::string>(), std::string("exl2"));

    // bpw: the target, and the written bytes.
    auto out = openModel(p.outputDir);
    QVERIFY2(out, out ? "" : out.error().message.c_str());
    double bits = 0;
    for (const auto& m : plan->modules)
        for (const auto& L : m.linears)
            for (const char* suf : {".q_weight", ".q_invperm", ".q_scale", ".q_scale_max", ".q_groups"}) {
                const TensorInfo* t = (*out)->find(L.prefix + suf);
                QVERIFY2(t, (L.prefix + suf).c_str());
                bits += 8.0 * static_cast<double>(t->nbytes);
            }
    const double numel = static_cast<double>(plan->decoderNumel());
    qInfo("%s: achieved %.4f bpw (file %.4f), target 6.0", a.c_str(), r->achievedBpw, bits / numel);
    QVERIFY(std::fabs(bits / numel - r->achievedBpw) < 1e-9);
    QVERIFY(r->achievedBpw <= 6.0);
    QVERIFY(r->achievedBpw >= 6.0 - 0.25);

    // Each quantized layer approximates the rows of the model tensor exllamav2 reads it from: its own
    // tensor, or (phi3) rows [0, q), [q, q + kv), [q + kv, q + 2kv) of qkv_proj for q/k/v and [0, ff),
    // [ff, 2ff) of gate_up_proj for gate/up (attn.py:185-193, mlp.py:86-111), offsets computed here.
    {
        const qztest::TinyDims d = qztest::tinyDims(a);
        const int64_t q = d.heads * d.headDim, kv = d.kvHeads * d.headDim;
        auto origin = [&](const LinearRef& L) -> std::pair<std::string, int64_t> {
            const std::string layer = L.prefix.substr(0, L.prefix.rfind('.'));
            if (a == "phi3" && L.slot == "q_proj") return {layer + ".qkv_proj.weight", 0};
            if (a == "phi3" && L.slot == "k_proj") return {layer + ".qkv_proj.weight", q};
            if (a == "phi3" && L.slot == "v_proj") return {layer + ".qkv_proj.weight", q + kv};
            if (a == "phi3" && L.slot == "gate_proj") return {layer + ".gate_up_proj.weight", 0};
            if (a == "phi3" && L.slot == "up_proj") return {layer + ".gate_up_proj.weight", d.ffn};
            return {L.prefix + ".weight", 0};
        };
        auto checkLayer = [&](const LinearRef& L) {
            const auto [name, row0] = origin(L);
            const TensorInfo* t = model.find(name);
            QVERIFY2(t, name.c_str());
            auto orig = readTensorF32(model, *t);
            QVERIFY(orig.ok());
            const auto& src = r->overrides.at(L.source());
            double e2 = 0, o2 = 0;
            for (int64_t i = 0; i < L.numel(); ++i) {
                const double o = (*orig)[static_cast<size_t>(row0 * L.in + i)];
                const double dq = src[static_cast<size_t>(L.srcRow0) * L.in + static_cast<size_t>(i)];
                e2 += (dq - o) * (dq - o);
                o2 += o * o;
            }
            QVERIFY2(std::sqrt(e2 / o2) < 0.05, (L.prefix + " is not its model rows").c_str());
        };
        for (const auto& m : plan->modules)
            for (const auto& L : m.linears) checkLayer(L);
        if (plan->head.out > 0) checkLayer(plan->head);
    }

    // 3. The independent reader: REF = our dequantized layers under exllamav2's names, every other tensor
    // at its fp16 value.
    const std::string refPath = tmp.filePath("ref.safetensors").toStdString();
    {
        std::vector<SafetensorsTensorDecl> decls;
        std::vector<std::vector<float>> data;
        std::set<std::string> sources;
        auto addLinear = [&](const LinearRef& L) {
            const auto& src = r->overrides.at(L.source());
            const size_t at = static_cast<size_t>(L.srcRow0) * L.in;
            decls.push_back({L.weightName, DType::F32, {L.out, L.in}});
            data.emplace_back(src.begin() + static_cast<std::ptrdiff_t>(at),
                              src.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(L.numel())));
            sources.insert(L.source());
        };
        for (const auto& m : plan->modules)
            for (const auto& L : m.linears) addLinear(L);
        if (plan->head.out > 0) addLinear(plan->head);
        for (const auto& t : model.tensors) {
            if (sources.count(t.name)) continue;
            auto v = readTensorF32(model, t);
            QVERIFY(v.ok());
            for (float& x : *v) x = fp16ToFp32(fp32ToFp16(x));
            decls.push_back({t.name, DType::F32, t.shape});
            data.push_back(std::move(*v));
        }
        SafetensorsWriter w;
        QVERIFY(w.open(refPath, decls).ok());
        for (const auto& d : data) QVERIFY(w.writeTensorFromF32(d).ok());
        QVERIFY(w.finish().ok());
        // Nothing else in the folder: every written tensor is a REF tensor or one of its q_* parts.
        for (const auto& t : (*out)->tensors) {
            std::string base = t.name;
            for (const char* suf : {".q_weight", ".q_invperm", ".q_scale", ".q_scale_max", ".q_groups"})
                if (base.size() > strlen(suf) && base.compare(base.size() - strlen(suf), strlen(suf), suf) == 0)
                    base = base.substr(0, base.size() - strlen(suf)) + ".weight";
            bool known = false;
            for (const auto& d : decls) known = known || d.name == base;
            QVERIFY2(known, t.name.c_str());
        }
    }
    QProcess proc;
    const QString python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    proc.start(python, {QString::fromStdString(kData + "/../exl2/read_check.py"), QString::fromStdString(p.outputDir),
                        QString::fromStdString(refPath), "--keys"});
    QVERIFY(proc.waitForFinished(600000));
    const QByteArray text = proc.readAllStandardOutput() + proc.readAllStandardError();
    qInfo("read_check.py: %s", text.trimmed().right(600).constData());
    QCOMPARE(proc.exitStatus(), QProcess::NormalExit);
    QCOMPARE(proc.exitCode(), 0);

    // 4. Perplexity and logits of the dequantized model against the original.
    auto pplOf = [&](const WeightOverrides* ov, std::vector<float>* logits) {
        auto eng = Engine::load(model, plainF32(ov));
        if (!eng) qFatal("%s", eng.error().message.c_str());
        if (logits) {
            logits->resize(static_cast<size_t>(nTok) * (*eng)->nVocab());
            if (!(*eng)->eval(win, 0, logits->data()).ok()) qFatal("eval");
            (*eng)->reset();
        }
        PerplexityParams pp = valid->params;
        pp.nCtx = 64;
        pp.nChunks = 8;
        auto res = computePerplexity(**eng, valid->tokens, pp);
        if (!res) qFatal("%s", res.error().message.c_str());
        return res->ppl;
    };
    std::vector<float> l0, lq;
    const double p0 = pplOf(nullptr, &l0), pq = pplOf(&r->overrides, &lq);
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < l0.size(); ++i) {
        d2 += (static_cast<double>(lq[i]) - l0[i]) * (static_cast<double>(lq[i]) - l0[i]);
        r2 += static_cast<double>(l0[i]) * l0[i];
    }
    qInfo("%s: perplexity %.4f original, %.4f EXL2 %.3f bpw; logits relative RMS %.4f", a.c_str(), p0, pq,
          r->achievedBpw, std::sqrt(d2 / r2));
    QVERIFY(std::fabs(pq / p0 - 1) < 0.01);
    QVERIFY(std::sqrt(d2 / r2) < (moe ? 0.20 : 0.10));
}

void TestExl2Archs::refusesGemma3Text() {
    QTemporaryDir tmp;
    const std::string dir = tmp.filePath("model").toStdString();
    QVERIFY(qztest::writeTinyModel(dir, "gemma3", kData));
    auto m = openModel(dir);
    QVERIFY(m.ok());
    auto plan = planModel(**m);
    QVERIFY(!plan);
    const std::string msg = plan.error().message;
    qInfo("%s", msg.c_str());
    QVERIFY(msg.find("Gemma3ForCausalLM") != std::string::npos);
    QVERIFY(msg.find(kExl2Archs) != std::string::npos);
    ExportParams p;
    p.calibPath = kData + "/text/shakespeare-train.txt";
    p.outputDir = tmp.filePath("exl2").toStdString();
    auto r = exportExl2(**m, p);
    QVERIFY(!r);
    QVERIFY(!fs::exists(p.outputDir));
}

QTEST_GUILESS_MAIN(TestExl2Archs)
#include "test_exl2_archs.moc"
