// Faults in the GPTQ and EXL2 folder exports, end to end on a tiny seeded llama (2 layers, hidden 64):
//   * a full disk (RLIMIT_FSIZE with SIGXFSZ ignored: writes past the limit fail with EFBIG) at several
//     limits, so that different files fail first (the carried-state file of GPTQ, EXL2's spilled tensors,
//     the safetensors output): exit 1, the message names the file and "File too large", no destination;
//     a rerun without the limit resumes and writes the same bytes as an undisturbed run;
//   * a destination that cannot take new files (/proc/self: even root cannot create there);
//   * cancels at seeded random progress polls across the whole export (measurement included for EXL2):
//     a cancelled error, no destination, no temporary file, the input untouched, and resuming after the
//     last cancel gives the bytes of the undisturbed run;
//   * a symlink planted under the partial folder's fixed name (".<name>.gptq-partial") is not followed, even
//     when its target holds a matching resume state;
//   * a second export to the same destination while one runs is refused (it used to remove the first
//     one's partial folder), and the first one's output is unharmed.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "exl2/exl2_export.h"
#include "gptq/gptq_export.h"
#include "io/safetensors_writer.h"
#include "model/model.h"
#include "sha256.h"
#include "time_scale.h"

namespace fs = std::filesystem;

class TestFaults : public QObject {
    Q_OBJECT
  private slots:
    void initTestCase();
    void gptqDiskFull();
    void exl2DiskFull();
    void readOnlyDestination();
    void gptqCancelAtRandomPoints();
    void exl2CancelAtRandomPoints();
    void plantedPartialFolderIsNotFollowed();
    void secondExportToTheSameFolderIsRefused();

  private:
    QTemporaryDir m_dir;
    std::string m_root, m_model, m_text;
    std::map<std::string, std::string> m_inputHashes;

    template <class MakeParams, class ExportFn>
    void cancelAtRandomPoints(const std::string& name, unsigned seed, MakeParams makeParams, ExportFn exportFn);

    static QString cli() { return QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"); }
    static QString q(const std::string& s) { return QString::fromStdString(s); }

    struct Run {
        int code = -1; // exit code; -2 crashed; -1 did not finish in time
        QByteArray out, err;
    };
    static Run run(const QStringList& args, rlim_t fsizeLimit = 0) {
        Run r;
        QProcess p;
        if (fsizeLimit)
            p.setChildProcessModifier([fsizeLimit] {
                ::signal(SIGXFSZ, SIG_IGN);
                struct rlimit rl {
                    fsizeLimit, fsizeLimit
                };
                ::setrlimit(RLIMIT_FSIZE, &rl);
            });
        p.start(cli(), args);
        if (!p.waitForFinished(scaledMs(120000))) {
            p.kill();
            p.waitForFinished();
            return r;
        }
        r.out = p.readAllStandardOutput();
        r.err = p.readAllStandardError();
        r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
        return r;
    }
    QStringList gptqArgs(const std::string& out) const {
        return {QStringLiteral("export"), q(m_model),         QStringLiteral("--format"),   QStringLiteral("gptq"),
                QStringLiteral("--bits"), QStringLiteral("4"), QStringLiteral("--group-size"), QStringLiteral("32"),
                QStringLiteral("--calib"), q(m_text),         QStringLiteral("--samples"),  QStringLiteral("4"),
                QStringLiteral("--seq-len"), QStringLiteral("64"), QStringLiteral("-o"),    q(out),
                QStringLiteral("--quiet")};
    }
    QStringList exl2Args(const std::string& out) const {
        return {QStringLiteral("export"),         q(m_model),          QStringLiteral("--format"),
                QStringLiteral("exl2"),           QStringLiteral("--bpw"), QStringLiteral("4"),
                QStringLiteral("--calib"),        q(m_text),           QStringLiteral("--measure-rows"),
                QStringLiteral("2"),              QStringLiteral("--measure-len"), QStringLiteral("64"),
                QStringLiteral("--rows"),         QStringLiteral("4"), QStringLiteral("--len"),
                QStringLiteral("64"),             QStringLiteral("--anneal-iterations"), QStringLiteral("10"),
                QStringLiteral("-o"),             q(out),              QStringLiteral("--quiet")};
    }
    qz::gptq::ExportParams gptqParams(const std::string& out) const {
        qz::gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 32;
        p.quant.threads = 1;
        p.calibPath = m_text;
        p.calib = {4, 64, 0};
        p.outputDir = out;
        return p;
    }
    qz::exl2::ExportParams exl2Params(const std::string& out) const {
        qz::exl2::ExportParams p;
        p.targetBpw = 4.0;
        p.calibPath = m_text;
        p.measureCalib = {2, 64, 0};
        p.quantCalib = {4, 64, 0};
        p.annealIterations = 10;
        p.threads = 1;
        p.outputDir = out;
        return p;
    }

    static std::string fileHash(const fs::path& path) {
        std::ifstream f(path, std::ios::binary);
        std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        return qz::test::sha256Hex(s.data(), s.size());
    }
    static std::map<std::string, std::string> folderHashes(const std::string& dir) {
        std::map<std::string, std::string> h;
        for (const auto& e : fs::directory_iterator(dir))
            h[e.path().filename().string()] = fileHash(e.path());
        return h;
    }
    // Files of a writer in progress anywhere under dir: temporary and lock files, spilled tensors.
    static QByteArray strays(const std::string& dir) {
        std::string s;
        for (const auto& e : fs::recursive_directory_iterator(dir)) {
            const std::string n = e.path().filename().string();
            if (n.find("qztmp") != std::string::npos || n.find("qzlock") != std::string::npos ||
                n == "out_tensor" || n.find("calib-states-") != std::string::npos ||
                n.find("exl2-states-") != std::string::npos)
                s += e.path().string() + " ";
        }
        return QByteArray::fromStdString(s);
    }
    static void removeAll(const std::string& root, const std::string& name) {
        fs::remove_all(root + "/" + name);
        fs::remove_all(root + "/." + name + ".gptq-partial");
        fs::remove_all(root + "/." + name + ".exl2-partial");
    }
};

namespace {
// A tiny llama in Hugging Face layout, F32 values from a xorshift seeded by the tensor name.
qz::Status writeTinyLlama(const std::string& dir, const std::string& tokenizerFrom) {
    const int64_t hidden = 64, ffn = 128, layers = 2, heads = 4, kvHeads = 2, headDim = 16, vocab = 512;
    struct T {
        std::string name;
        std::vector<int64_t> shape;
        bool norm = false;
    };
    std::vector<T> ts = {{"model.embed_tokens.weight", {vocab, hidden}}};
    for (int64_t l = 0; l < layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        ts.push_back({p + "input_layernorm.weight", {hidden}, true});
        ts.push_back({p + "self_attn.q_proj.weight", {heads * headDim, hidden}});
        ts.push_back({p + "self_attn.k_proj.weight", {kvHeads * headDim, hidden}});
        ts.push_back({p + "self_attn.v_proj.weight", {kvHeads * headDim, hidden}});
        ts.push_back({p + "self_attn.o_proj.weight", {hidden, heads * headDim}});
        ts.push_back({p + "post_attention_layernorm.weight", {hidden}, true});
        ts.push_back({p + "mlp.gate_proj.weight", {ffn, hidden}});
        ts.push_back({p + "mlp.up_proj.weight", {ffn, hidden}});
        ts.push_back({p + "mlp.down_proj.weight", {hidden, ffn}});
    }
    ts.push_back({"model.norm.weight", {hidden}, true});
    ts.push_back({"lm_head.weight", {vocab, hidden}});
    std::vector<qz::SafetensorsTensorDecl> decls;
    for (const auto& t : ts)
        decls.push_back({t.name, qz::DType::F32, t.shape});
    fs::create_directories(dir);
    qz::SafetensorsWriter w;
    if (auto s = w.open(dir + "/model.safetensors", decls); !s) return s;
    for (const auto& t : ts) {
        int64_t n = 1;
        for (int64_t d : t.shape)
            n *= d;
        std::vector<float> v(static_cast<size_t>(n));
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (char c : t.name)
            x = (x ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
        for (auto& f : v) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const float u = static_cast<float>(x >> 40) / static_cast<float>(1 << 24) - 0.5f; // [-0.5, 0.5)
            f = t.norm ? 1.0f + 0.2f * u : 0.25f * u;
        }
        if (auto s = w.writeTensorFromF32(v); !s) return s;
    }
    if (auto s = w.finish(); !s) return s;
    std::ofstream(dir + "/config.json")
        << "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": " << hidden
        << ", \"intermediate_size\": " << ffn << ", \"num_hidden_layers\": " << layers
        << ", \"num_attention_heads\": " << heads << ", \"num_key_value_heads\": " << kvHeads
        << ", \"head_dim\": " << headDim << ", \"vocab_size\": " << vocab
        << ", \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
           "\"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2, "
           "\"torch_dtype\": \"float32\"}\n";
    for (const char* f : {"tokenizer.model", "tokenizer_config.json"})
        fs::copy_file(tokenizerFrom + "/" + f, dir + "/" + f);
    return qz::okStatus();
}
} // namespace

void TestFaults::initTestCase() {
    QVERIFY(m_dir.isValid());
    m_root = m_dir.path().toStdString();
    m_model = m_root + "/model";
    m_text = QZ_TEST_DATA "/text/shakespeare-train.txt";
    auto s = writeTinyLlama(m_model, QZ_TEST_DATA "/models/bard-llama");
    QVERIFY2(s.ok(), s.ok() ? "" : s.error().message.c_str());
    m_inputHashes = folderHashes(m_model);
}

void TestFaults::gptqDiskFull() {
    const std::string ref = m_root + "/gptq-ref", out = m_root + "/gptq-full";
    Run r = run(gptqArgs(ref));
    QVERIFY2(r.code == 0, r.err.constData());
    const auto refHashes = folderHashes(ref);
    // 4 KiB: the first resume-state layer file; 64 KiB: model.safetensors (the layer files are 1-2 KiB);
    // 16 KiB with --max-memory 1: the carried hidden states go to a temporary file of 64 KiB (ftruncate).
    struct Case {
        rlim_t limit;
        QStringList extra;
        const char* file; // the failing file's name (in the partial folder)
    };
    const Case cases[] = {{4096, {}, ".qzl"},
                          {64 << 10, {}, "model.safetensors"},
                          {16 << 10, {QStringLiteral("--max-memory"), QStringLiteral("1")}, "calib-states-"}};
    for (const auto& c : cases) {
        removeAll(m_root, "gptq-full");
        const Run f = run(gptqArgs(out) + c.extra, c.limit);
        QVERIFY2(f.code == 1, (std::to_string(c.limit) + ": " + f.err.toStdString()).c_str());
        QVERIFY2(f.err.contains("File too large") && f.err.contains(c.file) &&
                     f.err.contains(QByteArray::fromStdString(m_root + "/.gptq-full.gptq-partial/")),
                 f.err.constData());
        QVERIFY(!fs::exists(out));
        QVERIFY2(strays(m_root).isEmpty(), strays(m_root).constData());
        QVERIFY(m_inputHashes == folderHashes(m_model));
        // With room again, the export resumes from its state and writes the undisturbed run's bytes.
        const Run again = run(gptqArgs(out));
        QVERIFY2(again.code == 0, again.err.constData());
        QVERIFY(refHashes == folderHashes(out));
    }
}

void TestFaults::exl2DiskFull() {
    const std::string ref = m_root + "/exl2-ref", out = m_root + "/exl2-full";
    Run r = run(exl2Args(ref));
    QVERIFY2(r.code == 0, r.err.constData());
    const auto refHashes = folderHashes(ref);
    const std::string measurement = ref + "/measurement.json";
    // With the measurement given nothing is written before the quantization: 1 KiB stops the first spilled
    // tensor (q_proj, 2 KiB of q_weight); 64 KiB the output.safetensors (1.3 MiB with the F16 embeddings).
    // Without it, 4 KiB stops the measurement's state.
    struct Case {
        rlim_t limit;
        bool measured;
        const char* file;
    };
    const Case cases[] = {{1024, true, "/out_tensor/0.bin"},
                          {64 << 10, true, "output.safetensors"},
                          {4096, false, ".json"}};
    for (const auto& c : cases) {
        removeAll(m_root, "exl2-full");
        QStringList args = exl2Args(out);
        if (c.measured) args << QStringLiteral("--measurement") << q(measurement);
        const Run f = run(args, c.limit);
        QVERIFY2(f.code == 1, (std::to_string(c.limit) + ": " + f.err.toStdString()).c_str());
        QVERIFY2(f.err.contains("File too large") && f.err.contains(c.file) &&
                     f.err.contains(QByteArray::fromStdString(m_root + "/.exl2-full.exl2-partial/")),
                 f.err.constData());
        QVERIFY(!fs::exists(out));
        QVERIFY2(strays(m_root).isEmpty(), strays(m_root).constData());
        QVERIFY(m_inputHashes == folderHashes(m_model));
        const Run again = run(args);
        QVERIFY2(again.code == 0, again.err.constData());
        QVERIFY(refHashes == folderHashes(out));
    }
}

void TestFaults::readOnlyDestination() {
    // /proc/self refuses new names even to root (chmod 0555 would not stop root).
    for (const auto& [args, out] : {std::pair{gptqArgs("/proc/self/qz-gptq"), std::string("/proc/self/qz-gptq")},
                                    std::pair{exl2Args("/proc/self/qz-exl2"), std::string("/proc/self/qz-exl2")}}) {
        const Run r = run(args);
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains(QByteArray::fromStdString(out + ": cannot create")) &&
                     (r.err.contains("No such file") || r.err.contains("Permission denied") ||
                      r.err.contains("Operation not permitted")),
                 r.err.constData());
    }
    QVERIFY(m_inputHashes == folderHashes(m_model));
}

// One undisturbed export counts the progress polls; then 30 exports (each from the beginning) are
// cancelled at seeded random polls: no destination, no stray files, the input unchanged; an export whose
// last polls came after the folder was complete must be whole. Resuming after the last cancel gives the
// undisturbed run's bytes. exportFn(params, progress) runs the export; makeParams(out) gives its params.
template <class MakeParams, class ExportFn>
void TestFaults::cancelAtRandomPoints(const std::string& name, unsigned seed, MakeParams makeParams,
                                      ExportFn exportFn) {
    const std::string out = m_root + "/" + name, ref = m_root + "/" + name + "-ref";
    int polls = 0;
    {
        auto r = exportFn(makeParams(ref), [&](const qz::ProgressInfo&) { return ++polls > 0; });
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    }
    QVERIFY(polls > 20);
    const auto refHashes = folderHashes(ref);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> pick(1, polls);
    int cancelled = 0;
    auto p = makeParams(out);
    p.resume = false; // each run starts afresh: every point is reached from the beginning
    for (int i = 0; i < 30; ++i) {
        const int k = pick(rng);
        int n = 0;
        auto r = exportFn(p, [&](const qz::ProgressInfo&) { return ++n < k; });
        if (r.ok()) { // the last polls can come after the folder is complete: then it is whole
            QVERIFY(refHashes == folderHashes(out));
            removeAll(m_root, name);
        } else {
            ++cancelled;
            QVERIFY2(r.error().cancelled, r.error().message.c_str());
            QVERIFY(!fs::exists(out));
        }
        QVERIFY2(strays(m_root).isEmpty(), strays(m_root).constData());
    }
    QVERIFY2(cancelled >= 24, std::to_string(cancelled).c_str());
    QVERIFY(m_inputHashes == folderHashes(m_model));
    p.resume = true;
    auto r = exportFn(p, qz::ProgressFn{});
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QVERIFY(refHashes == folderHashes(out));
}

void TestFaults::gptqCancelAtRandomPoints() {
    auto model = qz::openModel(m_model);
    QVERIFY2(model.ok(), model.ok() ? "" : model.error().message.c_str());
    cancelAtRandomPoints(
        "gptq-cancel", 20261207, [this](const std::string& out) { return gptqParams(out); },
        [&](const qz::gptq::ExportParams& p, qz::ProgressFn progress) {
            return qz::gptq::exportGptq(**model, p, std::move(progress));
        });
}

void TestFaults::exl2CancelAtRandomPoints() {
    auto model = qz::openModel(m_model);
    QVERIFY2(model.ok(), model.ok() ? "" : model.error().message.c_str());
    cancelAtRandomPoints(
        "exl2-cancel", 20261208, [this](const std::string& out) { return exl2Params(out); },
        [&](const qz::exl2::ExportParams& p, qz::ProgressFn progress) {
            return qz::exl2::exportExl2(**model, p, std::move(progress));
        });
}

void TestFaults::plantedPartialFolderIsNotFollowed() {
    // A real resume state (the export cancelled after a few layers), moved elsewhere and linked back under
    // the partial folder's name: reusing it would write into the link's target and rename the link onto
    // the destination.
    auto model = qz::openModel(m_model);
    QVERIFY(model.ok());
    const std::string out = m_root + "/planted", partial = m_root + "/.planted.gptq-partial";
    const std::string elsewhere = m_root + "/elsewhere";
    const auto p = gptqParams(out);
    int n = 0;
    auto r = qz::gptq::exportGptq(**model, p, [&](const qz::ProgressInfo&) { return ++n < 12; });
    QVERIFY(!r.ok() && r.error().cancelled);
    QVERIFY(fs::exists(partial + "/gptq-state.json"));
    fs::rename(partial, elsewhere);
    fs::create_directory_symlink(elsewhere, partial);
    const auto elsewhereBefore = folderHashes(elsewhere);
    r = qz::gptq::exportGptq(**model, p);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QCOMPARE(r->resumedLayers, 0);
    QVERIFY(!fs::is_symlink(out) && fs::is_directory(out));
    QVERIFY(!fs::exists(fs::symlink_status(partial)));
    QVERIFY(elsewhereBefore == folderHashes(elsewhere));
    QVERIFY(fs::exists(out + "/model.safetensors"));
}

void TestFaults::secondExportToTheSameFolderIsRefused() {
    auto model = qz::openModel(m_model);
    QVERIFY(model.ok());
    const std::string out = m_root + "/twice", ref = m_root + "/twice-ref";
    // GPTQ: the second export starts from the first one's progress callback (another open file description,
    // so the lock conflicts as between two processes).
    QVERIFY(qz::gptq::exportGptq(**model, gptqParams(ref)).ok());
    int n = 0;
    std::string second;
    auto r = qz::gptq::exportGptq(**model, gptqParams(out), [&](const qz::ProgressInfo&) {
        if (++n == 10) {
            auto r2 = qz::gptq::exportGptq(**model, gptqParams(out));
            second = r2.ok() ? std::string("accepted") : r2.error().message;
        }
        return true;
    });
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QVERIFY2(second.find(out) != std::string::npos && second.find("another export") != std::string::npos,
             second.c_str());
    QVERIFY(folderHashes(ref) == folderHashes(out));
    // EXL2.
    removeAll(m_root, "twice");
    removeAll(m_root, "twice-ref");
    QVERIFY(qz::exl2::exportExl2(**model, exl2Params(ref)).ok());
    n = 0;
    second.clear();
    auto e = qz::exl2::exportExl2(**model, exl2Params(out), [&](const qz::ProgressInfo&) {
        if (++n == 10) {
            auto r2 = qz::exl2::exportExl2(**model, exl2Params(out));
            second = r2.ok() ? std::string("accepted") : r2.error().message;
        }
        return true;
    });
    QVERIFY2(e.ok(), e.ok() ? "" : e.error().message.c_str());
    QVERIFY2(second.find(out) != std::string::npos && second.find("another export") != std::string::npos,
             second.c_str());
    QVERIFY(folderHashes(ref) == folderHashes(out));
    QVERIFY2(strays(m_root).isEmpty(), strays(m_root).constData());
}

QTEST_GUILESS_MAIN(TestFaults)
#include "test_faults.moc"
