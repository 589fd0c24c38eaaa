// Inputs found by the libFuzzer harnesses (tests/fuzz) that crashed, hung or exhausted memory in a reader,
// kept in tests/data/fuzz-regressions/<harness>/. Each is fed to the same readers, in the same order as its
// harness does, in the normal build: the reader must fail cleanly with the message fragment listed for
// the file in that folder's expected.tsv ("<file>\t<fragment>"); every input needs a line, so a new
// input cannot be added without stating what it must give.
#include <QtTest>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "exl2/exl2_measure.h"
#include "ggml/imatrix.h"
#include "gguf/gguf_reader.h"
#include "gptq/gptq_layers.h"
#include "infer/hparams.h"
#include "infer/perplexity.h"
#include "io/hf_folder.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/model_vocab.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/tokenizer.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {

const std::string kData = QZ_TEST_DATA;
const std::string kRegressions = kData + "/fuzz-regressions";

std::string readAll(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeAll(const std::string& p, const std::string& b) {
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(b.data(), static_cast<std::streamsize>(b.size()));
}

// The outcome of one input: the first error met, or "" when every step succeeded.
template <class R> bool failed(const R& r, std::string& err) {
    if (r) return false;
    err = r.error().message;
    return true;
}

// A vocab read from a hostile file must give a working tokenizer or a clean error (fuzz_vocab_use.h).
std::string useVocab(const Vocab& v) {
    auto tok = Tokenizer::create(v);
    if (!tok) return tok.error().message;
    const auto ids = (*tok)->encode("Hello world! <s> 123 \xc3\xa9t\xc3\xa9\n  ok", true, true);
    for (int32_t id : ids)
        if (id < 0 || id >= (*tok)->size()) return "encode produced id " + std::to_string(id);
    (void)(*tok)->decode(ids, false, true);
    return {};
}

std::string runGguf(const std::string& path) {
    std::string err;
    auto m = openGgufModel(path);
    if (failed(m, err)) return err;
    auto hp = readInferHParams(**m);
    if (failed(hp, err)) return err;
    auto v = vocabForModel(**m);
    if (failed(v, err)) return err;
    if (auto e = useVocab(*v); !e.empty()) return e;
    for (const auto& t : (*m)->tensors)
        if (t.numel() <= (1u << 16))
            if (auto r = readTensorF32(**m, t); failed(r, err)) return err;
    return {};
}

// fuzz_hf_json's input: selector byte, then config.json NUL tokenizer_config.json NUL tokenizer.json.
std::string runHfJson(const std::string& path, const std::string& dir) {
    const std::string in = readAll(path);
    if (in.empty()) return "empty input";
    std::vector<std::string> parts(3);
    size_t k = 0;
    for (size_t i = 1; i < in.size(); ++i) {
        if (in[i] == '\0' && k + 1 < parts.size()) {
            ++k;
            continue;
        }
        parts[k].push_back(in[i]);
    }
    const char* names[] = {"config.json", "tokenizer_config.json", "tokenizer.json"};
    for (size_t i = 0; i < 3; ++i)
        if (!parts[i].empty()) writeAll(dir + "/" + names[i], parts[i]);
    if (in[0] & 2) fs::copy_file(kData + "/models/stories260K/hf/tokenizer.model", dir + "/tokenizer.model");
    auto base = openHfFolder(kData + ((in[0] & 1) ? "/models/bard-gpt2" : "/models/stories260K/hf"));
    if (!base) return "base model: " + base.error().message;
    Model m = **base;
    std::string err;
    if (!parts[0].empty()) {
        if (auto st = applyHfConfig(m, dir + "/config.json"); !st) {
            err = st.error().message;
        } else if (auto hp = readInferHParams(m); !hp) {
            err = hp.error().message;
        }
    }
    auto v = loadHfVocab(dir);
    std::string verr = v ? useVocab(*v) : v.error().message;
    // Both readers run (as in the harness); the first error is the outcome.
    return !err.empty() ? err : verr;
}

} // namespace

class TestFuzzRegressions : public QObject {
    Q_OBJECT
  private slots:
    void regressions_data();
    void regressions();
    void everyHarnessFolderKnown();
};

void TestFuzzRegressions::regressions_data() {
    QTest::addColumn<QString>("harness");
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("expected");
    QVERIFY2(fs::is_directory(kRegressions), kRegressions.c_str());
    std::vector<fs::path> dirs;
    for (const auto& d : fs::directory_iterator(kRegressions))
        if (d.is_directory()) dirs.push_back(d.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& dir : dirs) {
        std::map<std::string, std::string> expected;
        std::ifstream tsv(dir / "expected.tsv");
        for (std::string line; std::getline(tsv, line);) {
            if (line.empty() || line[0] == '#') continue;
            const auto tab = line.find('\t');
            QVERIFY2(tab != std::string::npos,
                     ("no tab in " + (dir / "expected.tsv").string() + ": " + line).c_str());
            expected[line.substr(0, tab)] = line.substr(tab + 1);
        }
        std::vector<fs::path> files;
        for (const auto& f : fs::directory_iterator(dir))
            if (f.is_regular_file() && f.path().filename() != "expected.tsv") files.push_back(f.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            const std::string name = f.filename().string();
            QVERIFY2(expected.count(name), (f.string() + " has no line in expected.tsv").c_str());
            const std::string tag = dir.filename().string() + "/" + name;
            QTest::newRow(tag.c_str())
                << QString::fromStdString(dir.filename().string()) << QString::fromStdString(f.string())
                << QString::fromStdString(expected[name]);
        }
    }
}

void TestFuzzRegressions::regressions() {
    QFETCH(QString, harness);
    QFETCH(QString, file);
    QFETCH(QString, expected);
    const std::string h = harness.toStdString(), path = file.toStdString();
    std::string err;
    if (h == "safetensors") {
        auto f = MappedFile::open(path);
        QVERIFY2(f, f ? "" : f.error().message.c_str());
        auto r = parseSafetensors(**f);
        if (!r) err = r.error().message;
    } else if (h == "gguf") {
        err = runGguf(path);
    } else if (h == "hf_json") {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        err = runHfJson(path, dir.path().toStdString());
    } else if (h == "spm") {
        auto r = loadSpmModel(path);
        if (!r) err = r.error().message;
    } else if (h == "imatrix") {
        auto r = ggml::loadImatrix(path);
        if (!r) err = r.error().message;
    } else if (h == "exl2_measurement") {
        auto model = openHfFolder(kData + "/models/bard-llama");
        QVERIFY(model);
        auto plan = exl2::planModel(**model);
        QVERIFY(plan);
        auto r = exl2::readMeasurementJson(path, *plan);
        if (!r) err = r.error().message;
    } else if (h == "gptq_record") {
        auto r = gptq::loadLayerRecord(path);
        if (!r) err = r.error().message;
    } else if (h == "kld_base") {
        auto r = loadKldBase(path);
        if (!r) err = r.error().message;
    } else {
        QFAIL(("unknown harness folder " + h).c_str());
    }
    qInfo().noquote() << QString::fromStdString(err.substr(0, 300));
    QVERIFY2(!err.empty(), "the input was accepted");
    QVERIFY2(err.find(expected.toStdString()) != std::string::npos,
             ("expected \"" + expected.toStdString() + "\", got: " + err).c_str());
}

// Every harness of tests/fuzz has its readers above (a folder named after a harness that is not handled
// would fail in regressions(); this checks the other direction).
void TestFuzzRegressions::everyHarnessFolderKnown() {
    const std::set<std::string> handled = {"safetensors",      "gguf",        "hf_json", "spm", "imatrix",
                                           "exl2_measurement", "gptq_record", "kld_base"};
    const fs::path fuzzDir = fs::path(QZ_RESOURCES_DIR).parent_path() / "tests" / "fuzz";
    int seen = 0;
    for (const auto& f : fs::directory_iterator(fuzzDir)) {
        const std::string n = f.path().stem().string();
        if (f.path().extension() != ".cpp" || n.rfind("fuzz_", 0) != 0 || n == "fuzz_seeds") continue;
        ++seen;
        QVERIFY2(handled.count(n.substr(5)), ("no regression reader for " + n).c_str());
    }
    QCOMPARE(seen, static_cast<int>(handled.size()));
}

QTEST_GUILESS_MAIN(TestFuzzRegressions)
#include "test_fuzz_regressions.moc"
