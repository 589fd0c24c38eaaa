// Hostile inputs and faults: crafted files, FIFOs, planted symlinks, an output naming the input, two writers,
// signals, a full disk (RLIMIT_FSIZE) and cancels at random points. Each case must end with a clear error
// (naming the file and the reason), no crash or hang, no partial output under the final name, no temporary
// file left, and the input untouched.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/file_util.h"
#include "common/safe_file.h"
#include "convert/hf_to_gguf.h"
#include "export/gguf_export.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "infer/perplexity.h"
#include "model/model.h"
#include "sha256.h"
#include "tokenizer/hf_vocab.h"
#include "time_scale.h"

namespace fs = std::filesystem;

class TestHostile : public QObject {
    Q_OBJECT
  private slots:
    void deeplyNestedConfigIsRefused();
    void kldBaseSizeOverflowIsRefused();
    void hyperParametersAreRangeChecked();
    void ggufHyperParametersAreRangeChecked();
    void exceptionsBecomeErrors();
    void textInputsMustBeRegularFiles();
    void outputNamingAnInputIsRefused();
    void plantedTemporaryNamesAreNotFollowed();
    void secondWriterIsRefused();
    void signalsCleanUp();
    void diskFullNamesFileAndReason();
    void readOnlyDestination();
    void cancelAtRandomPoints();
    void symlinksStayInsideTheModel();
    void tokenizerFilesStayInsideTheModel();
    void ggufZeroSizeTensorHidesNoOverlap();
    void ggufStringArrayMemoryIsBounded();
    void controlCharactersAreEscaped();

  private:
    static QString cli() { return QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"); }
    static std::string demo() { return QZ_RESOURCES_DIR "/demo/stories260K"; }
    static std::string text() { return QZ_TEST_DATA "/text/shakespeare-valid.txt"; }

    struct Run {
        int code = -1; // exit code; -2 crashed; -1 did not finish in time
        QByteArray out, err;
        qint64 ms = 0;
    };
    static Run run(const QStringList& args, int timeoutMs = 60000, rlim_t fsizeLimit = 0) {
        Run r;
        QProcess p;
        if (fsizeLimit)
            p.setChildProcessModifier([fsizeLimit] {
                // A full disk without mounting one: writes past the limit fail with EFBIG.
                ::signal(SIGXFSZ, SIG_IGN);
                struct rlimit rl {
                    fsizeLimit, fsizeLimit
                };
                ::setrlimit(RLIMIT_FSIZE, &rl);
            });
        QElapsedTimer t;
        t.start();
        p.start(cli(), args);
        if (!p.waitForFinished(scaledMs(timeoutMs))) {
            p.kill();
            p.waitForFinished();
            r.ms = t.elapsed();
            return r;
        }
        r.ms = t.elapsed();
        r.out = p.readAllStandardOutput();
        r.err = p.readAllStandardError();
        r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
        return r;
    }
    // A writable copy of the demo model in dir/name.
    static std::string copyDemo(const QTemporaryDir& dir, const std::string& name = "model") {
        const fs::path to = fs::path(dir.path().toStdString()) / name;
        fs::create_directories(to);
        for (const auto& e : fs::directory_iterator(demo()))
            fs::copy_file(e.path(), to / e.path().filename());
        return to.string();
    }
    static std::string fileHash(const std::string& path) {
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
    // Names in dir that are temporary or lock files of a writer.
    static std::vector<std::string> leftovers(const std::string& dir) {
        std::vector<std::string> v;
        for (const auto& e : fs::directory_iterator(dir)) {
            const std::string n = e.path().filename().string();
            if (n.find("qztmp") != std::string::npos || n.find("qzlock") != std::string::npos ||
                n.find(".tmp") != std::string::npos)
                v.push_back(n);
        }
        return v;
    }
    static QByteArray names(const std::vector<std::string>& v) {
        std::string s;
        for (const auto& n : v)
            s += n + " ";
        return QByteArray::fromStdString(s);
    }
    static void writeText(const std::string& path, const std::string& s) {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f << s;
    }
    static std::string readText(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    }
    static QString q(const std::string& s) { return QString::fromStdString(s); }
};

void TestHostile::deeplyNestedConfigIsRefused() {
    // ~100k levels of '[' in a field nobody reads: the display of config.json recursed until the stack
    // overflowed (SIGSEGV) in every command opening the folder.
    QTemporaryDir dir;
    const std::string m = copyDemo(dir);
    std::string cfg = readText(m + "/config.json");
    cfg.insert(cfg.find('{') + 1, "\"junk\": " + std::string(100000, '[') + std::string(100000, ']') + ",");
    writeText(m + "/config.json", cfg);
    const Run r = run({QStringLiteral("info"), q(m)});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("config.json") && r.err.contains("nested"), r.err.constData());
    // 512 levels are still fine.
    cfg = readText(demo() + "/config.json");
    cfg.insert(cfg.find('{') + 1, "\"junk\": " + std::string(500, '[') + std::string(500, ']') + ",");
    writeText(m + "/config.json", cfg);
    QCOMPARE(run({QStringLiteral("info"), q(m)}).code, 0);
}

void TestHostile::kldBaseSizeOverflowIsRefused() {
    // nCtx 2572, nVocab 13369540, nChunks 2^30: 20 + 4·tokens + 2·logprobs wraps to exactly 20 in 64 bits,
    // so a 20-byte file passed the size check and the loader allocated petabytes (bad_alloc abort).
    QTemporaryDir dir;
    const std::string p = dir.filePath(QStringLiteral("base.kld")).toStdString();
    std::string bytes = "_logits_";
    const int32_t hdr[3] = {2572, 13369540, 1 << 30};
    bytes.append(reinterpret_cast<const char*>(hdr), sizeof hdr);
    QCOMPARE(bytes.size(), size_t{20});
    writeText(p, bytes);
    auto r = qz::loadKldBase(p);
    QVERIFY(!r.ok());
    QVERIFY2(r.error().message.find(p) != std::string::npos, r.error().message.c_str());
    QVERIFY(r.error().message.find("size") != std::string::npos);
    // Through the CLI: an error, not an abort.
    const Run c = run({QStringLiteral("perplexity"), q(demo()), QStringLiteral("--kl-divergence"),
                       QStringLiteral("--kl-divergence-base"), q(p), QStringLiteral("--quiet")});
    QCOMPARE(c.code, 1);
}

void TestHostile::hyperParametersAreRangeChecked() {
    const std::string base = readText(demo() + "/config.json");
    auto with = [&](const std::string& key, const std::string& value) {
        std::string s = base;
        const auto k = s.find("\"" + key + "\"");
        if (k == std::string::npos) {
            s.insert(s.find('{') + 1, "\"" + key + "\": " + value + ",");
        } else {
            const auto colon = s.find(':', k), end = s.find_first_of(",}", colon);
            s.replace(colon + 1, end - colon - 1, " " + value);
        }
        return s;
    };
    QVERIFY(qz::archParamsFromConfig(base, "config.json").ok());
    const std::pair<const char*, const char*> bad[] = {
        {"num_hidden_layers", "1099511627776"},
        {"head_dim", "-64"},
        {"max_position_embeddings", "-1"},
        {"head_dim", "1099511627776"},
        {"num_key_value_heads", "0"},
        {"vocab_size", "4294967296"},
        {"intermediate_size", "-5"},
        {"head_dim", "7"},
        {"rms_norm_eps", "-1"},
        {"num_attention_heads", "100000"},
    };
    for (const auto& [k, v] : bad) {
        auto r = qz::archParamsFromConfig(with(k, v), "config.json");
        QVERIFY2(!r.ok(), (std::string(k) + " = " + v + " accepted").c_str());
        QVERIFY2(r.error().message.find("config.json") != std::string::npos, r.error().message.c_str());
    }
    // The reported cases through the CLI: an error and no file, quickly (head_dim 2^40 with llama3 rope
    // scaling aborted with bad_alloc after 40 s; the others were written into the GGUF, exit 0).
    QTemporaryDir dir;
    const std::string m = copyDemo(dir);
    const std::string llama3 =
        "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
        "\"original_max_position_embeddings\": 8192}";
    std::string c1 = with("head_dim", "1099511627776");
    {
        std::string t = c1;
        t.insert(t.find('{') + 1, "\"rope_scaling\": " + llama3 + ",");
        c1 = t;
    }
    for (const std::string& cfg : {c1, with("num_hidden_layers", "1099511627776"), with("head_dim", "-64"),
                                   with("max_position_embeddings", "-1")}) {
        writeText(m + "/config.json", cfg);
        const std::string out = dir.filePath(QStringLiteral("o.gguf")).toStdString();
        const Run r = run({QStringLiteral("export"), q(m), QStringLiteral("--format"), QStringLiteral("gguf"),
                           QStringLiteral("--type"), QStringLiteral("F16"), QStringLiteral("-o"), q(out),
                           QStringLiteral("--quiet")},
                          30000);
        QVERIFY2(r.code == 1, (cfg + "\n" + r.err.toStdString()).c_str());
        QVERIFY2(r.err.contains("config.json"), r.err.constData());
        QVERIFY(!fs::exists(out));
        QVERIFY2(r.ms < 10000, std::to_string(r.ms).c_str());
    }
}

void TestHostile::ggufHyperParametersAreRangeChecked() {
    // A GGUF input's key/values are copied into the exported file: block_count 4e9, context_length
    // 0xFFFFFFFF (-1 as int32), head_dim (key_length) -64 as uint32 were written into a new GGUF (exit 0);
    // the evaluator refused them already. The values are patched in place into a real export of the demo.
    QTemporaryDir dir;
    const std::string src = dir.filePath(QStringLiteral("s.gguf")).toStdString();
    {
        auto model = qz::openModel(demo());
        QVERIFY(model.ok());
        qz::GgufExportParams p;
        p.outputPath = src;
        p.type = "F32";
        QVERIFY(qz::exportGguf(**model, p, {}).ok());
    }
    const std::string bytes = readText(src);
    auto patched = [&](const std::string& key, uint32_t value) {
        std::string b = bytes;
        std::string needle(8, '\0');
        const uint64_t n = key.size();
        std::memcpy(needle.data(), &n, 8);
        needle += key;
        const size_t at = b.find(needle);
        if (at == std::string::npos) qFatal("key %s not in the export", key.c_str());
        uint32_t type = 0;
        std::memcpy(&type, b.data() + at + needle.size(), 4);
        if (type != 4 && type != 5) qFatal("key %s is not a 32-bit integer", key.c_str()); // UINT32 / INT32
        std::memcpy(b.data() + at + needle.size() + 4, &value, 4);
        return b;
    };
    const std::string in = dir.filePath(QStringLiteral("h.gguf")).toStdString();
    const std::string out = dir.filePath(QStringLiteral("o.gguf")).toStdString();
    const std::pair<const char*, uint32_t> cases[] = {
        {"llama.block_count", 4000000000u},
        {"llama.block_count", 0},
        {"llama.context_length", 0xFFFFFFFFu},
        {"llama.attention.key_length", static_cast<uint32_t>(-64)},
        {"llama.attention.head_count_kv", 100000},
        {"llama.embedding_length", 0x80000000u},
    };
    for (const auto& [key, value] : cases) {
        writeText(in, patched(key, value));
        auto model = qz::openModel(in);
        QVERIFY2(model.ok(), key); // reading the file is fine: the values are only metadata there
        qz::GgufExportParams p;
        p.outputPath = out;
        p.type = "Q8_0";
        auto r = qz::exportGguf(**model, p, {});
        QVERIFY2(!r.ok(), key);
        QVERIFY2(r.error().message.find(in) != std::string::npos &&
                     r.error().message.find(key) != std::string::npos &&
                     r.error().message.find("out of range") != std::string::npos,
                 r.error().message.c_str());
        QVERIFY(!fs::exists(out));
        const Run c = run({QStringLiteral("export"), q(in), QStringLiteral("--format"), QStringLiteral("gguf"),
                           QStringLiteral("--type"), QStringLiteral("Q8_0"), QStringLiteral("-o"), q(out),
                           QStringLiteral("--quiet")});
        QVERIFY2(c.code == 1 && c.err.contains(key), c.err.constData());
        QVERIFY(!fs::exists(out));
        const Run e = run({QStringLiteral("perplexity"), q(in), QStringLiteral("-f"), q(text()),
                           QStringLiteral("-c"), QStringLiteral("64"), QStringLiteral("--chunks"),
                           QStringLiteral("1"), QStringLiteral("--quiet")});
        QVERIFY2(e.code == 1 && e.err.contains(key), e.err.constData());
    }
    // The unpatched file exports.
    auto model = qz::openModel(src);
    QVERIFY(model.ok());
    qz::GgufExportParams p;
    p.outputPath = out;
    p.type = "Q8_0";
    QVERIFY(qz::exportGguf(**model, p, {}).ok());
}

void TestHostile::exceptionsBecomeErrors() {
    auto r = qz::runGuarded([]() -> qz::Result<int> { throw std::bad_alloc(); });
    QVERIFY(!r.ok());
    QVERIFY(r.error().message.find("out of memory") != std::string::npos);
    auto s = qz::runGuarded([]() -> qz::Status { throw std::runtime_error("boom"); });
    QVERIFY(!s.ok());
    QVERIFY(s.error().message.find("boom") != std::string::npos);
    QCOMPARE(qz::runGuarded([]() -> qz::Result<int> { return 7; }).value(), 7);
}

void TestHostile::textInputsMustBeRegularFiles() {
    QTemporaryDir dir;
    const std::string fifo = dir.filePath(QStringLiteral("fifo")).toStdString();
    QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
    // -f /dev/zero read forever; a FIFO -f or model blocked in open() waiting for a writer.
    const QStringList cases[] = {
        {QStringLiteral("perplexity"), q(demo()), QStringLiteral("-f"), QStringLiteral("/dev/zero")},
        {QStringLiteral("perplexity"), q(demo()), QStringLiteral("-f"), q(fifo)},
        {QStringLiteral("imatrix"), q(demo()), QStringLiteral("-f"), q(fifo), QStringLiteral("-o"),
         dir.filePath(QStringLiteral("i.gguf"))},
        {QStringLiteral("perplexity"), q(fifo), QStringLiteral("-f"), q(text())},
        {QStringLiteral("info"), q(fifo)},
    };
    for (const auto& args : cases) {
        const Run r = run(args, 15000);
        QVERIFY2(r.code == 1, (args.join(' ') + " -> " + QString::number(r.code)).toUtf8().constData());
        QVERIFY2(r.err.contains("not a regular file"), r.err.constData());
    }
    auto t = qz::readRegularFile(text(), 100);
    QVERIFY(!t.ok());
    QVERIFY(t.error().message.find("too large") != std::string::npos);
    int polls = 0;
    auto c = qz::readRegularFile(text(), 1 << 30, [&] { return ++polls > 0; });
    QVERIFY(!c.ok() && c.error().cancelled);
}

void TestHostile::outputNamingAnInputIsRefused() {
    QTemporaryDir dir;
    const std::string m = copyDemo(dir);
    const auto before = folderHashes(m);
    const std::string link = dir.filePath(QStringLiteral("hard.safetensors")).toStdString();
    fs::create_hard_link(m + "/model.safetensors", link);
    const std::string symlink = dir.filePath(QStringLiteral("sym.gguf")).toStdString();
    fs::create_symlink(m + "/tokenizer.model", symlink);
    for (const std::string& out : {m + "/model.safetensors", link, symlink, m + "/config.json"}) {
        const Run r = run({QStringLiteral("export"), q(m), QStringLiteral("--format"), QStringLiteral("gguf"),
                           QStringLiteral("--type"), QStringLiteral("F16"), QStringLiteral("-o"), q(out),
                           QStringLiteral("--quiet")});
        QVERIFY2(r.code == 1, (out + ": " + r.err.toStdString()).c_str());
        QVERIFY2(r.err.contains("input"), r.err.constData());
    }
    // imatrix -o, perplexity --kl-divergence-base and quantize --report onto the model's files.
    QCOMPARE(run({QStringLiteral("imatrix"), q(m), QStringLiteral("-f"), q(text()), QStringLiteral("-o"),
                  q(m + "/model.safetensors"), QStringLiteral("--chunks"), QStringLiteral("1"),
                  QStringLiteral("-c"), QStringLiteral("32"), QStringLiteral("--quiet")})
                 .code,
             1);
    QCOMPARE(run({QStringLiteral("perplexity"), q(m), QStringLiteral("-f"), q(text()),
                  QStringLiteral("--kl-divergence-base"), q(m + "/tokenizer.model"), QStringLiteral("-c"),
                  QStringLiteral("32"), QStringLiteral("--chunks"), QStringLiteral("1"),
                  QStringLiteral("--quiet")})
                 .code,
             1);
    QCOMPARE(run({QStringLiteral("quantize"), q(m), QStringLiteral("--report"), q(m + "/config.json"),
                  QStringLiteral("--quiet")})
                 .code,
             1);
    QVERIFY(before == folderHashes(m));
    QVERIFY(fs::is_symlink(symlink));
}

void TestHostile::plantedTemporaryNamesAreNotFollowed() {
    // The old fixed temporary names (<out>.qztmp, <base>.tmp) were opened with O_TRUNC and followed a
    // symlink planted there: the file it pointed to was overwritten.
    QTemporaryDir dir;
    const std::string victim = dir.filePath(QStringLiteral("victim")).toStdString();
    writeText(victim, "precious");
    const std::string out = dir.filePath(QStringLiteral("o.gguf")).toStdString();
    const std::string base = dir.filePath(QStringLiteral("b.kld")).toStdString();
    fs::create_symlink(victim, out + ".qztmp");
    fs::create_symlink(victim, base + ".tmp");
    Run r = run({QStringLiteral("export"), q(demo()), QStringLiteral("--format"), QStringLiteral("gguf"),
                 QStringLiteral("--type"), QStringLiteral("Q8_0"), QStringLiteral("-o"), q(out),
                 QStringLiteral("--quiet")});
    QVERIFY2(r.code == 0, r.err.constData());
    r = run({QStringLiteral("perplexity"), q(demo()), QStringLiteral("-f"), q(text()), QStringLiteral("-c"),
             QStringLiteral("64"), QStringLiteral("--chunks"), QStringLiteral("2"),
             QStringLiteral("--kl-divergence-base"), q(base), QStringLiteral("--quiet")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(readText(victim), std::string("precious"));
    QVERIFY(fs::is_symlink(out + ".qztmp"));
    QVERIFY(fs::is_symlink(base + ".tmp"));
    QVERIFY(qz::loadKldBase(base).ok());
    // Temporary files are created in the destination folder with the umask applied (0644 under 022).
    const mode_t old = ::umask(022);
    QVERIFY(qz::writeFileAtomic(dir.filePath(QStringLiteral("m.json")).toStdString(), "{}").ok());
    ::umask(old);
    QCOMPARE(fs::status(dir.filePath(QStringLiteral("m.json")).toStdString()).permissions() & fs::perms::all,
             fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
}

void TestHostile::secondWriterIsRefused() {
    // Two exports to one output at once left a corrupt file reported as written.
    QTemporaryDir dir;
    const std::string p = dir.filePath(QStringLiteral("t.gguf")).toStdString();
    qz::GgufWriter a(p), b(p);
    QVERIFY(a.addTensor("t", {4}, qz::DType::F32).ok());
    QVERIFY(b.addTensor("t", {4}, qz::DType::F32).ok());
    QVERIFY(a.begin().ok());
    auto s = b.begin();
    QVERIFY(!s.ok());
    QVERIFY2(s.error().message.find(p) != std::string::npos &&
                 s.error().message.find("another") != std::string::npos,
             s.error().message.c_str());
    const float v[4] = {1, 2, 3, 4};
    QVERIFY(a.writeTensorData({reinterpret_cast<const uint8_t*>(v), sizeof v}).ok());
    QVERIFY(a.finish().ok());
    QVERIFY(leftovers(dir.path().toStdString()).empty());
    // Once the first is done the name is free again.
    qz::GgufWriter c(p);
    QVERIFY(c.addTensor("t", {4}, qz::DType::F32).ok());
    QVERIFY(c.begin().ok());
    c.abort();
    QVERIFY(leftovers(dir.path().toStdString()).empty());
}

void TestHostile::signalsCleanUp() {
    // The export is stopped (SIGSTOP) once its temporary file exists, the signals are queued, and SIGCONT
    // delivers them: one signal → cancel + cleanup (exit 128+sig); two different pending signals → the
    // second handler unlinks the registered temporaries and exits at once.
    struct Case {
        std::vector<int> sigs; // exit code 128 + one of them (130 SIGINT, 143 SIGTERM, 129 SIGHUP)
    };
    const Case cases[] = {{{SIGTERM}}, {{SIGHUP}}, {{SIGINT}}, {{SIGTERM, SIGHUP}}, {{SIGINT, SIGTERM}}};
    for (const auto& c : cases) {
        QTemporaryDir dir;
        const std::string outDir = dir.path().toStdString();
        const std::string out = outDir + "/o.gguf";
        bool caught = false;
        for (int attempt = 0; attempt < 20 && !caught; ++attempt) {
            QProcess p;
            p.start(cli(),
                    {QStringLiteral("export"), q(demo()), QStringLiteral("--format"), QStringLiteral("gguf"),
                     QStringLiteral("--type"), QStringLiteral("Q4_K_M"), QStringLiteral("-o"), q(out)});
            QVERIFY(p.waitForStarted());
            const pid_t pid = static_cast<pid_t>(p.processId());
            // Poll: stop the child, look for its temporary file, go on if not there yet.
            while (!p.waitForFinished(0)) { // (also lets QProcess see the exit)
                ::kill(pid, SIGSTOP);
                bool tmp = false;
                for (const auto& e : fs::directory_iterator(outDir))
                    tmp |= e.path().filename().string().find("qztmp") != std::string::npos;
                if (tmp) {
                    for (int s : c.sigs)
                        ::kill(pid, s);
                    ::kill(pid, SIGCONT);
                    caught = true;
                    break;
                }
                ::kill(pid, SIGCONT);
                QThread::usleep(200);
            }
            if (caught) QVERIFY(p.waitForFinished(scaledMs(30000)));
            if (!caught) { // finished before a temporary was seen: start over
                fs::remove(out);
                continue;
            }
            QCOMPARE(p.exitStatus(), QProcess::NormalExit);
            if (p.exitCode() == 0 && c.sigs.size() == 1) {
                // The signal came after the export's last cancel point: it finished; the file is whole.
                QVERIFY(qz::openModel(out).ok());
                QVERIFY(leftovers(outDir).empty());
                fs::remove(out);
                caught = false;
                continue;
            }
            // Two pending signals are delivered in the kernel's order: either may be "the first".
            bool expected = false;
            for (int sig : c.sigs)
                expected |= p.exitCode() == 128 + sig;
            QVERIFY2(expected, std::to_string(p.exitCode()).c_str());
            QVERIFY2(leftovers(outDir).empty(), names(leftovers(outDir)).constData());
            QVERIFY(!fs::exists(out));
        }
        QVERIFY2(caught, "the export never showed its temporary file");
    }
}

void TestHostile::diskFullNamesFileAndReason() {
    // RLIMIT_FSIZE with SIGXFSZ ignored: writes past 4 KiB fail with EFBIG, as on a full disk.
    QTemporaryDir dir;
    const std::string m = copyDemo(dir);
    const auto before = folderHashes(m);
    const std::string o = dir.path().toStdString() + "/out";
    fs::create_directory(o);
    struct Case {
        QStringList args;
        std::string out;
    };
    const std::vector<Case> cases = {
        {{QStringLiteral("export"), q(m), QStringLiteral("--format"), QStringLiteral("gguf"),
          QStringLiteral("--type"), QStringLiteral("F16"), QStringLiteral("-o"), q(o + "/f16.gguf")},
         o + "/f16.gguf"},
        {{QStringLiteral("export"), q(m), QStringLiteral("--format"), QStringLiteral("gguf"),
          QStringLiteral("--type"), QStringLiteral("Q4_K_M"), QStringLiteral("-o"), q(o + "/q4.gguf")},
         o + "/q4.gguf"},
        {{QStringLiteral("perplexity"), q(m), QStringLiteral("-f"), q(text()), QStringLiteral("-c"),
          QStringLiteral("64"), QStringLiteral("--chunks"), QStringLiteral("2"),
          QStringLiteral("--kl-divergence-base"), q(o + "/b.kld")},
         o + "/b.kld"},
        {{QStringLiteral("quantize"), q(m), QStringLiteral("--report"), q(o + "/r.json"),
          QStringLiteral("--all")},
         o + "/r.json"},
        {{QStringLiteral("imatrix"), q(m), QStringLiteral("-f"), q(text()), QStringLiteral("-c"),
          QStringLiteral("64"), QStringLiteral("--chunks"), QStringLiteral("2"), QStringLiteral("-o"),
          q(o + "/imatrix.gguf")},
         o + "/imatrix.gguf"},
    };
    for (const auto& c : cases) {
        QStringList args = c.args;
        args << QStringLiteral("--quiet");
        const Run r = run(args, 60000, 4096);
        QVERIFY2(r.code == 1, (args.join(' ') + "\n" + QString::fromUtf8(r.err)).toUtf8().constData());
        QVERIFY2(r.err.contains(QByteArray::fromStdString(c.out)) && r.err.contains("File too large"),
                 r.err.constData());
        QVERIFY(!fs::exists(c.out));
        QVERIFY2(leftovers(o).empty(), names(leftovers(o)).constData());
    }
    QVERIFY(before == folderHashes(m));
}

void TestHostile::readOnlyDestination() {
    // A destination whose folder cannot take new files. As root, chmod 0555 does not stop writes; /proc
    // does (EACCES/ENOENT/EPERM for any new name), and needs neither mount rights nor chattr.
    const std::string out = "/proc/self/qz-test.gguf";
    const Run r = run({QStringLiteral("export"), q(demo()), QStringLiteral("--format"),
                       QStringLiteral("gguf"), QStringLiteral("--type"), QStringLiteral("F16"),
                       QStringLiteral("-o"), q(out), QStringLiteral("--quiet")});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains(QByteArray::fromStdString(out)) && r.err.contains("cannot create") &&
                 (r.err.contains("No such file") || r.err.contains("Permission denied")),
             r.err.constData());
    // When not root, a 0555 folder is the plain case.
    if (::geteuid() != 0) {
        QTemporaryDir dir;
        QVERIFY(QFile::setPermissions(dir.path(), QFile::ReadOwner | QFile::ExeOwner));
        const std::string o2 = dir.path().toStdString() + "/o.gguf";
        const Run r2 = run({QStringLiteral("export"), q(demo()), QStringLiteral("--format"),
                            QStringLiteral("gguf"), QStringLiteral("--type"), QStringLiteral("F16"),
                            QStringLiteral("-o"), q(o2), QStringLiteral("--quiet")});
        QCOMPARE(r2.code, 1);
        QVERIFY(r2.err.contains("Permission denied"));
        QFile::setPermissions(dir.path(), QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    }
}

void TestHostile::cancelAtRandomPoints() {
    // A progress callback that cancels at its k-th poll, for 100 seeded random k over the whole export.
    QTemporaryDir dir;
    const std::string m = copyDemo(dir);
    const auto before = folderHashes(m);
    auto model = qz::openModel(m);
    QVERIFY(model.ok());
    const std::string outDir = dir.path().toStdString() + "/out";
    fs::create_directory(outDir);
    qz::GgufExportParams p;
    p.outputPath = outDir + "/o.gguf";
    p.type = "Q4_K_M";
    p.threads = 1;
    int polls = 0;
    {
        auto r = qz::exportGguf(**model, p, [&](const qz::ProgressInfo&) { return ++polls > 0; });
        QVERIFY(r.ok());
        fs::remove(p.outputPath);
    }
    QVERIFY(polls > 10);
    std::mt19937 rng(20261207);
    std::uniform_int_distribution<int> pick(1, polls);
    int cancelled = 0;
    for (int i = 0; i < 100; ++i) {
        const int k = pick(rng);
        int n = 0;
        auto r = qz::exportGguf(**model, p, [&](const qz::ProgressInfo&) { return ++n < k; });
        if (r.ok()) { // the last poll can come after the file is complete: then it must be whole
            QVERIFY(qz::openModel(p.outputPath).ok());
            fs::remove(p.outputPath);
        } else {
            ++cancelled;
            QVERIFY2(r.error().cancelled, r.error().message.c_str());
            QVERIFY(!fs::exists(p.outputPath));
        }
        QVERIFY2(leftovers(outDir).empty(), names(leftovers(outDir)).constData());
    }
    QVERIFY(cancelled >= 90);
    QVERIFY(before == folderHashes(m));
}

void TestHostile::symlinksStayInsideTheModel() {
    // GPTQ/EXL2 exports copied side files that were symlinks to files outside the model folder into the
    // output (both copy them with copyModelSideFiles); model files are read through symlinks only inside
    // the folder or its hub cache repository.
    QTemporaryDir dir;
    const std::string root = dir.path().toStdString();
    const std::string m = copyDemo(dir);
    fs::create_directory(root + "/elsewhere");
    fs::create_directory(root + "/out1");
    writeText(root + "/elsewhere/secret.json", "{\"secret\": 1}");
    fs::remove(m + "/tokenizer_config.json");
    fs::create_symlink(root + "/elsewhere/secret.json", m + "/tokenizer_config.json");
    const std::vector<std::string> side = {"generation_config.json", "tokenizer.model",
                                           "tokenizer_config.json"};
    std::vector<std::string> copied;
    auto s = qz::copyModelSideFiles(m, root + "/out1", side, copied);
    QVERIFY(!s.ok());
    QVERIFY2(s.error().message.find("tokenizer_config.json") != std::string::npos &&
                 s.error().message.find("outside") != std::string::npos,
             s.error().message.c_str());
    QVERIFY(!fs::exists(root + "/out1/tokenizer_config.json"));
    // A symlink inside the folder is fine.
    fs::remove(m + "/tokenizer_config.json");
    fs::rename(m + "/tokenizer.model", m + "/real.model");
    fs::create_symlink("real.model", m + "/tokenizer.model");
    copied.clear();
    QVERIFY(qz::copyModelSideFiles(m, root + "/out1", side, copied).ok());
    QCOMPARE(copied, std::vector<std::string>{"tokenizer.model"});
    QVERIFY(!fs::is_symlink(root + "/out1/tokenizer.model"));
    QCOMPARE(fileHash(root + "/out1/tokenizer.model"), fileHash(demo() + "/tokenizer.model"));
    // config.json pointing outside: the folder is refused when opened.
    fs::remove(m + "/config.json");
    fs::copy_file(demo() + "/config.json", root + "/elsewhere/config.json");
    fs::create_symlink(root + "/elsewhere/config.json", m + "/config.json");
    Run r = run({QStringLiteral("info"), q(m)});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("outside"), r.err.constData());

    // The hub cache layout keeps working: snapshots/<rev>/<file> -> ../../blobs/<hash>.
    const std::string repo = root + "/hub/models--org--stories";
    const std::string snap = repo + "/snapshots/0123abcd";
    fs::create_directories(repo + "/blobs");
    fs::create_directories(snap);
    int i = 0;
    for (const auto& e : fs::directory_iterator(demo())) {
        const std::string blob = "blob" + std::to_string(i++);
        fs::copy_file(e.path(), repo + "/blobs/" + blob);
        fs::create_symlink("../../blobs/" + blob, snap + "/" + e.path().filename().string());
    }
    r = run({QStringLiteral("info"), q(snap), QStringLiteral("--no-tensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(r.out.contains("hidden_size"));
    fs::create_directory(root + "/out2");
    copied.clear();
    QVERIFY(qz::copyModelSideFiles(snap, root + "/out2", side, copied).ok());
    QCOMPARE(fileHash(root + "/out2/tokenizer.model"), fileHash(demo() + "/tokenizer.model"));
    // A hub snapshot file linking outside its repository's blobs is refused.
    fs::remove(snap + "/tokenizer_config.json");
    fs::create_symlink(root + "/elsewhere/secret.json", snap + "/tokenizer_config.json");
    QVERIFY(!qz::copyModelSideFiles(snap, root + "/out2", side, copied).ok());
}

void TestHostile::tokenizerFilesStayInsideTheModel() {
    // The vocabulary read from tokenizer.model / tokenizer.json ends up in exported GGUF files: a tokenizer
    // file that links out of the model folder is refused, one that links inside it (or into the hub
    // cache's blobs) is read.
    QTemporaryDir dir;
    const std::string root = dir.path().toStdString();
    const std::string m = copyDemo(dir);
    QVERIFY(qz::loadHfVocab(m).ok());
    fs::create_directory(root + "/elsewhere");
    fs::rename(m + "/tokenizer.model", root + "/elsewhere/tokenizer.model");
    fs::create_symlink(root + "/elsewhere/tokenizer.model", m + "/tokenizer.model");
    auto v = qz::loadHfVocab(m);
    QVERIFY(!v.ok());
    QVERIFY2(v.error().message.find("outside the model folder") != std::string::npos, v.error().message.c_str());
    fs::remove(m + "/tokenizer.model");
    fs::copy_file(root + "/elsewhere/tokenizer.model", m + "/inside.model");
    fs::create_symlink("inside.model", m + "/tokenizer.model");
    QVERIFY(qz::loadHfVocab(m).ok());

    // Byte-level BPE: tokenizer.json linking outside.
    const std::string g = root + "/gpt2";
    fs::create_directory(g);
    for (const auto& e : fs::directory_iterator(std::string(QZ_TEST_DATA) + "/models/bard-gpt2"))
        if (e.path().filename() != "model.safetensors") fs::copy_file(e.path(), g + "/" + e.path().filename().string());
    QVERIFY(qz::loadHfVocab(g).ok());
    fs::rename(g + "/tokenizer.json", root + "/elsewhere/tokenizer.json");
    fs::create_symlink(root + "/elsewhere/tokenizer.json", g + "/tokenizer.json");
    v = qz::loadHfVocab(g);
    QVERIFY(!v.ok());
    QVERIFY2(v.error().message.find("outside the model folder") != std::string::npos, v.error().message.c_str());

    // Hub cache layout: snapshots/<rev>/tokenizer.model -> ../../blobs/<hash> is read.
    const std::string repo = root + "/hub/models--org--stories";
    const std::string snap = repo + "/snapshots/0123abcd";
    fs::create_directories(repo + "/blobs");
    fs::create_directories(snap);
    int i = 0;
    for (const auto& e : fs::directory_iterator(demo())) {
        const std::string blob = "blob" + std::to_string(i++);
        fs::copy_file(e.path(), repo + "/blobs/" + blob);
        fs::create_symlink("../../blobs/" + blob, snap + "/" + e.path().filename().string());
    }
    QVERIFY(qz::loadHfVocab(snap).ok());
}

namespace {
struct Bytes {
    std::string b;
    template <class T> void put(T v) { b.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b += s;
    }
    void tensor(const std::string& name, uint64_t ne, uint64_t offset) { // 1-D F32
        str(name);
        put<uint32_t>(1);
        put<uint64_t>(ne);
        put<uint32_t>(0);
        put<uint64_t>(offset);
    }
};
} // namespace

void TestHostile::ggufZeroSizeTensorHidesNoOverlap() {
    // a [0, 128) and b [64, 192) overlap; an empty tensor at offset 32 sorted between them hid it.
    QTemporaryDir dir;
    const std::string p = dir.filePath(QStringLiteral("o.gguf")).toStdString();
    Bytes g;
    g.b = "GGUF";
    g.put<uint32_t>(3);
    g.put<uint64_t>(3);
    g.put<uint64_t>(0);
    g.tensor("a", 32, 0);
    g.tensor("z", 0, 32);
    g.tensor("b", 32, 64);
    g.b.resize((g.b.size() + 31) / 32 * 32 + 192, '\0');
    writeText(p, g.b);
    auto r = qz::GgufFile::open(p);
    QVERIFY(!r.ok());
    QVERIFY2(r.error().message.find("overlap") != std::string::npos, r.error().message.c_str());
    // Without the overlap (b at 128) the same file is fine.
    Bytes ok;
    ok.b = "GGUF";
    ok.put<uint32_t>(3);
    ok.put<uint64_t>(3);
    ok.put<uint64_t>(0);
    ok.tensor("a", 32, 0);
    ok.tensor("z", 0, 32);
    ok.tensor("b", 32, 128);
    ok.b.resize((ok.b.size() + 31) / 32 * 32 + 256, '\0');
    writeText(p, ok.b);
    auto r2 = qz::GgufFile::open(p);
    QVERIFY2(r2.ok(), r2.ok() ? "" : r2.error().message.c_str());
}

void TestHostile::ggufStringArrayMemoryIsBounded() {
    // 17M empty strings: 136 MB in the file (8 bytes each, a sparse file of zeros here), 32 bytes each in
    // memory (544 MB). The reader refuses before committing the memory.
    QTemporaryDir dir;
    const std::string p = dir.filePath(QStringLiteral("s.gguf")).toStdString();
    const uint64_t n = 17u << 20;
    Bytes g;
    g.b = "GGUF";
    g.put<uint32_t>(3);
    g.put<uint64_t>(0);
    g.put<uint64_t>(1);
    g.str("a");
    g.put<uint32_t>(9); // array
    g.put<uint32_t>(8); // of strings
    g.put<uint64_t>(n);
    writeText(p, g.b);
    fs::resize_file(p, g.b.size() + n * 8);
    QElapsedTimer t;
    t.start();
    auto r = qz::GgufFile::open(p);
    QVERIFY(!r.ok());
    QVERIFY2(r.error().message.find("memory") != std::string::npos, r.error().message.c_str());
    QVERIFY(t.elapsed() < 5000);
    // A real-sized vocabulary (300k strings) is far below the budget.
    Bytes v;
    v.b = "GGUF";
    v.put<uint32_t>(3);
    v.put<uint64_t>(0);
    v.put<uint64_t>(1);
    v.str("tokenizer.ggml.tokens");
    v.put<uint32_t>(9);
    v.put<uint32_t>(8);
    v.put<uint64_t>(300000);
    for (int i = 0; i < 300000; ++i)
        v.str("token_with_a_longer_name_" + std::to_string(i));
    writeText(p, v.b);
    auto r2 = qz::GgufFile::open(p);
    QVERIFY2(r2.ok(), r2.ok() ? "" : r2.error().message.c_str());
}

void TestHostile::controlCharactersAreEscaped() {
    // An OSC sequence (ESC ] ... BEL) and a C1 CSI in metadata must not reach the terminal raw.
    const std::string evil = "name\x1b]0;owned\x07 \xc2\x9b"
                             "31m ok \xc3\xa9";
    const std::string shown = qz::printableText(evil);
    QCOMPARE(shown, std::string("name\\x1b]0;owned\\x07 \\u009b31m ok \xc3\xa9"));
    QCOMPARE(qz::GgufValue::string(evil).display().find('\x1b'), std::string::npos);
    // Through the CLI: a config.json value with an escape sequence.
    QTemporaryDir dir;
    const std::string m = copyDemo(dir);
    std::string cfg = readText(m + "/config.json");
    cfg.insert(cfg.find('{') + 1, "\"comment\": \"\\u001b]2;title\\u0007x\",");
    writeText(m + "/config.json", cfg);
    const Run r = run({QStringLiteral("info"), q(m), QStringLiteral("--no-tensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(!r.out.contains('\x1b') && !r.out.contains('\x07'));
    QVERIFY2(r.out.contains("\\x1b]2;title\\x07x"), r.out.constData());
}

QTEST_GUILESS_MAIN(TestHostile)
#include "test_hostile.moc"
