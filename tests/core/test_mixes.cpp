// llama-quantize type selection (ggml/mixes.h).
//
// Expected values: the tensor types and the tensor order of llama.cpp's own quantized files
// (tests/data/golden/*/tensors.tsv, written by llama-quantize), the core/ggml/README.md C tables, and cases
// derived by hand from llama-quant.cpp's rules (70B, MoE, overrides, QuantZoo's F16 extension).
#include <QtTest>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ggml/mixes.h"

using namespace qz;
using namespace qz::ggml;

namespace {

const std::string kData = QZ_TEST_DATA;

struct Row {
    std::string file, tensor, type;
    std::vector<int64_t> ne;
};

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> f;
    std::stringstream ss(s);
    std::string c;
    while (std::getline(ss, c, sep)) f.push_back(c);
    return f;
}

std::vector<int64_t> parseNe(const std::string& s) {
    std::vector<int64_t> ne;
    for (const auto& p : split(s, 'x')) ne.push_back(std::stoll(p));
    return ne;
}

std::string typeName(const std::string& fromTsv) {  // numeric ggml id or a name
    if (!fromTsv.empty() && std::isdigit(static_cast<unsigned char>(fromTsv[0]))) {
        auto t = dtypeFromGgmlId(static_cast<uint32_t>(std::stoul(fromTsv)));
        return t ? std::string(dtypeName(*t)) : "?";
    }
    return fromTsv;
}

// Rows of one tsv in file order. bard-llama has a header and an idx column; the others have
// file, tensor, type id, ne, sha256 and are in file order already.
std::vector<Row> readTsv(const std::string& model) {
    std::vector<Row> rows;
    std::ifstream in(kData + "/golden/" + model + "/tensors.tsv");
    std::string line;
    const bool llama = model == "bard-llama";
    std::vector<std::pair<std::string, int>> keys;
    while (std::getline(in, line)) {
        auto f = split(line, '\t');
        Row r;
        if (llama) {
            if (f.size() < 11 || f[0] == "dir") continue;
            if (f[0] == "from-bf16") continue;
            r.file = f[1];
            r.tensor = f[4];
            r.type = f[5];
            r.ne = parseNe(f[6]);
            keys.emplace_back(r.file, std::stoi(f[3]));
        } else {
            if (f.size() < 5) continue;
            r.file = f[0];
            r.tensor = f[1];
            r.type = typeName(f[2]);
            r.ne = parseNe(f[3]);
        }
        rows.push_back(r);
    }
    if (llama) {  // order by (file, idx)
        std::vector<size_t> idx(rows.size());
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
        std::vector<Row> sorted;
        for (size_t i : idx) sorted.push_back(rows[i]);
        rows = sorted;
    }
    return rows;
}

std::vector<Row> rowsOf(const std::vector<Row>& all, const std::string& file) {
    std::vector<Row> r;
    for (const auto& x : all)
        if (x.file == file) r.push_back(x);
    return r;
}

std::vector<MixTensor> asF32Tensors(const std::vector<Row>& rows) {
    std::vector<MixTensor> t;
    for (const auto& r : rows) t.push_back(MixTensor{r.tensor, r.ne, DType::F32});
    return t;
}

MixModelInfo bardLlama() { return MixModelInfo{"llama", 4, 8, 4, 0}; }   // config.json
MixModelInfo bardGpt2() { return MixModelInfo{"gpt2", 3, 4, 0, 0}; }     // config.json (no GQA)
MixModelInfo stories() { return MixModelInfo{"llama", 5, 8, 4, 0}; }     // stories260K.gguf KVs

// Checks order and types of one golden file; `input` is in any order.
void checkGolden(const MixModelInfo& model, std::vector<MixTensor> input, const std::vector<Row>& golden,
                 const std::string& mix, bool imatrix) {
    QVERIFY2(!golden.empty(), mix.c_str());
    sortLlamaOrder(input);
    QCOMPARE(input.size(), golden.size());
    for (size_t i = 0; i < input.size(); ++i) QCOMPARE(input[i].name, golden[i].tensor);
    MixOptions o;
    auto ft = fileTypeFromName(mix);
    QVERIFY2(ft.has_value(), mix.c_str());
    o.ftype = *ft;
    o.hasImatrix = imatrix;
    auto res = chooseTensorTypes(model, input, o);
    QVERIFY2(res.ok(), res.ok() ? "" : res.error().message.c_str());
    for (size_t i = 0; i < input.size(); ++i) {
        const std::string got(dtypeName((*res)[i].type));
        if (got != golden[i].type)
            qWarning("%s %s: got %s (%s), llama.cpp %s", mix.c_str(), input[i].name.c_str(), got.c_str(),
                     (*res)[i].reason.c_str(), golden[i].type.c_str());
        QCOMPARE(got, golden[i].type);
        QCOMPARE((*res)[i].quantize, golden[i].type != "F32");
        QVERIFY(!(*res)[i].beyondLlamaCpp);
        QVERIFY(!(*res)[i].reason.empty());
    }
}

const MixChoice& choiceFor(const std::vector<MixTensor>& t, const std::vector<MixChoice>& c, const std::string& n) {
    for (size_t i = 0; i < t.size(); ++i)
        if (t[i].name == n) return c[i];
    static MixChoice none;
    return none;
}

// A dense llama tensor list (sorted) with the given sizes.
std::vector<MixTensor> llamaTensors(int nLayer, int64_t nEmbd, int64_t nKv, int64_t nFf, int64_t nVocab,
                                    bool withOutput) {
    std::vector<MixTensor> t;
    t.push_back({"token_embd.weight", {nEmbd, nVocab}, DType::F16});
    t.push_back({"output_norm.weight", {nEmbd}, DType::F32});
    if (withOutput) t.push_back({"output.weight", {nEmbd, nVocab}, DType::F16});
    for (int i = 0; i < nLayer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        t.push_back({p + "attn_norm.weight", {nEmbd}, DType::F32});
        t.push_back({p + "attn_q.weight", {nEmbd, nEmbd}, DType::F16});
        t.push_back({p + "attn_k.weight", {nEmbd, nKv}, DType::F16});
        t.push_back({p + "attn_v.weight", {nEmbd, nKv}, DType::F16});
        t.push_back({p + "attn_output.weight", {nEmbd, nEmbd}, DType::F16});
        t.push_back({p + "ffn_norm.weight", {nEmbd}, DType::F32});
        t.push_back({p + "ffn_gate.weight", {nEmbd, nFf}, DType::F16});
        t.push_back({p + "ffn_up.weight", {nEmbd, nFf}, DType::F16});
        t.push_back({p + "ffn_down.weight", {nFf, nEmbd}, DType::F16});
    }
    sortLlamaOrder(t);
    return t;
}

}  // namespace

class TestMixes : public QObject {
    Q_OBJECT

private slots:
    void fileTypeTable() {
        // ids and default types of core/ggml/README.md C.1
        const std::vector<std::tuple<std::string, int, DType>> expect = {
            {"F32", 0, DType::F32},       {"F16", 1, DType::F16},       {"Q4_0", 2, DType::Q4_0},
            {"Q4_1", 3, DType::Q4_1},     {"Q8_0", 7, DType::Q8_0},     {"Q5_0", 8, DType::Q5_0},
            {"Q5_1", 9, DType::Q5_1},     {"Q2_K", 10, DType::Q2_K},    {"Q3_K_S", 11, DType::Q3_K},
            {"Q3_K_M", 12, DType::Q3_K},  {"Q3_K_L", 13, DType::Q3_K},  {"Q4_K_S", 14, DType::Q4_K},
            {"Q4_K_M", 15, DType::Q4_K},  {"Q5_K_S", 16, DType::Q5_K},  {"Q5_K_M", 17, DType::Q5_K},
            {"Q6_K", 18, DType::Q6_K},    {"IQ2_XXS", 19, DType::IQ2_XXS}, {"IQ2_XS", 20, DType::IQ2_XS},
            {"Q2_K_S", 21, DType::Q2_K},  {"IQ3_XS", 22, DType::IQ3_S}, {"IQ3_XXS", 23, DType::IQ3_XXS},
            {"IQ1_S", 24, DType::IQ1_S},  {"IQ4_NL", 25, DType::IQ4_NL}, {"IQ3_S", 26, DType::IQ3_S},
            {"IQ3_M", 27, DType::IQ3_S},  {"IQ2_S", 28, DType::IQ2_XS}, {"IQ2_M", 29, DType::IQ2_S},
            {"IQ4_XS", 30, DType::IQ4_XS}, {"IQ1_M", 31, DType::IQ1_M}, {"BF16", 32, DType::BF16},
            {"TQ1_0", 36, DType::TQ1_0},  {"TQ2_0", 37, DType::TQ2_0}};
        for (const auto& [name, id, def] : expect) {
            auto ft = fileTypeFromName(name);
            QVERIFY2(ft.has_value(), name.c_str());
            QCOMPARE(static_cast<int>(*ft), id);
            QCOMPARE(fileTypeInfo(*ft)->defaultType, def);
            QCOMPARE(fileTypeFromName(std::to_string(id)), ft);
        }
        QCOMPARE(fileTypeFromName("q4_k"), std::optional<FileType>(FileType::MOSTLY_Q4_K_M));
        QCOMPARE(fileTypeFromName("Q3_K"), std::optional<FileType>(FileType::MOSTLY_Q3_K_M));
        QCOMPARE(fileTypeFromName("Q5_K"), std::optional<FileType>(FileType::MOSTLY_Q5_K_M));
        QVERIFY(!fileTypeFromName("Q7_K").has_value());
        QVERIFY(!fileTypeFromName("5").has_value());
    }

    void useMoreBitsTable() {
        // core/ggml/README.md C.6: n = 32 -> {0,1,2,3, 6,9,...,27, 28,29,30,31}
        std::set<int> expect = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
        for (int i = 0; i < 32; ++i) QCOMPARE(useMoreBits(i, 32), expect.count(i) == 1);
    }

    void orderComparator() {
        QVERIFY(llamaTensorLess("output.weight", "blk.0.attn_k.weight"));  // non-block first (-1)
        QVERIFY(llamaTensorLess("blk.2.ffn_up.weight", "blk.10.attn_k.weight"));  // numeric layer
        QVERIFY(llamaTensorLess("blk.10.attn_k.weight", "blk.10.attn_norm.weight"));
        QVERIFY(!llamaTensorLess("token_embd.weight", "output_norm.weight"));
        const std::vector<std::string> names = {"blk.1.a", "z.weight", "blk.0.b", "a.weight"};
        QCOMPARE(llamaOrder(names), (std::vector<size_t>{3, 1, 2, 0}));
    }

    void bardLlamaGoldens_data() {
        QTest::addColumn<QString>("mix");
        QTest::addColumn<bool>("imatrix");
        for (const char* m : {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
                              "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"})
            QTest::newRow(m) << QString(m) << false;
        QTest::newRow("Q4_K_M-imat") << QString("Q4_K_M") << true;
        QTest::newRow("Q3_K_S-imat") << QString("Q3_K_S") << true;
    }
    void bardLlamaGoldens() {
        QFETCH(QString, mix);
        QFETCH(bool, imatrix);
        const auto all = readTsv("bard-llama");
        const auto input = asF32Tensors(rowsOf(all, "bard-llama-F32.gguf"));  // convert's order
        QCOMPARE(int(input.size()), 39);
        const std::string file = "bard-llama-" + mix.toStdString() + (imatrix ? "-imat" : "") + ".gguf";
        checkGolden(bardLlama(), input, rowsOf(all, file), mix.toStdString(), imatrix);
    }

    void bardGpt2Goldens_data() {
        QTest::addColumn<QString>("mix");
        for (const char* m : {"Q4_K_M", "Q5_0", "Q6_K", "Q8_0"}) QTest::newRow(m) << QString(m);
    }
    void bardGpt2Goldens() {
        QFETCH(QString, mix);
        const auto all = readTsv("bard-gpt2");
        const auto input = asF32Tensors(rowsOf(all, "bard-gpt2-F32.gguf"));
        QCOMPARE(int(input.size()), 40);
        checkGolden(bardGpt2(), input, rowsOf(all, "bard-gpt2-" + mix.toStdString() + ".gguf"), mix.toStdString(),
                    false);
    }

    void stories260KGoldens_data() {
        QTest::addColumn<QString>("mix");
        for (const char* m : {"Q2_K", "Q4_K_M"}) QTest::newRow(m) << QString(m);
    }
    void stories260KGoldens() {
        QFETCH(QString, mix);
        const auto all = readTsv("stories260K");
        const auto golden = rowsOf(all, "stories260K-" + mix.toStdString() + ".gguf");
        auto input = asF32Tensors(golden);
        std::mt19937 rng(11);
        std::shuffle(input.begin(), input.end(), rng);  // the sort must restore llama-quantize's order
        checkGolden(stories(), input, golden, mix.toStdString(), false);
    }

    // llama-quantize refuses Q8_0 and Q4_0 on stories260K (ffn_down rows of 172); QuantZoo uses F16 there
    // and flags it. Other tensors: Q8_0 mix -> Q8_0 everywhere (output keeps Q8_0); Q4_0 mix -> Q4_0,
    // output Q6_K -> (64 % 256) fallback Q8_0.
    void stories260KBeyondLlamaCpp() {
        const auto all = readTsv("stories260K");
        auto input = asF32Tensors(rowsOf(all, "stories260K-Q2_K.gguf"));
        for (const char* mix : {"Q8_0", "Q4_0"}) {
            MixOptions o;
            o.ftype = *fileTypeFromName(mix);
            auto res = chooseTensorTypes(stories(), input, o);
            QVERIFY(res.ok());
            int flagged = 0;
            for (size_t i = 0; i < input.size(); ++i) {
                const auto& c = (*res)[i];
                const std::string& n = input[i].name;
                if (input[i].ne.size() < 2) {
                    QCOMPARE(c.type, DType::F32);
                    QVERIFY(!c.quantize);
                } else if (n.find("ffn_down") != std::string::npos) {
                    QCOMPARE(c.type, DType::F16);
                    QVERIFY(c.beyondLlamaCpp && c.fallback);
                    QVERIFY(c.reason.find("F16") != std::string::npos);
                    ++flagged;
                } else if (std::string(mix) == "Q4_0" && n == "output.weight") {
                    QCOMPARE(c.type, DType::Q8_0);
                    QVERIFY(c.fallback && !c.beyondLlamaCpp);
                } else {
                    QCOMPARE(c.type, std::string(mix) == "Q8_0" ? DType::Q8_0 : DType::Q4_0);
                }
            }
            QCOMPARE(flagged, 5);
            o.strictLlamaCpp = true;  // then we fail exactly as llama-quantize does
            auto strict = chooseTensorTypes(stories(), input, o);
            QVERIFY(!strict.ok());
            QVERIFY(strict.error().message.find("no tensor type fallback") != std::string::npos);
        }
    }

    // --tensor-type: first matching regex wins; a manual tensor does not advance the mix counters
    // (llama-quant.cpp calls the rules only for non-manual tensors), so blk.1.attn_v then sees index 0.
    void tensorTypeOverrides() {
        auto t = llamaTensors(4, 256, 128, 768, 512, true);
        MixOptions o;
        o.ftype = FileType::MOSTLY_Q4_K_M;
        o.tensorTypes = {{"blk\\.0\\.attn_.*", DType::Q8_0}, {"attn_v", DType::Q5_K}, {"ffn_up", DType::Q5_0}};
        auto r = chooseTensorTypes(bardLlama(), t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.0.attn_v.weight").type, DType::Q8_0);  // first match, not attn_v=Q5_K
        QCOMPARE(choiceFor(t, *r, "blk.0.attn_q.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.1.attn_v.weight").type, DType::Q5_K);
        QCOMPARE(choiceFor(t, *r, "blk.3.ffn_up.weight").type, DType::Q5_0);
        QVERIFY(choiceFor(t, *r, "blk.3.ffn_up.weight").reason.find("--tensor-type") != std::string::npos);
        QCOMPARE(choiceFor(t, *r, "blk.1.attn_q.weight").type, DType::Q4_K);
        QCOMPARE(choiceFor(t, *r, "output.weight").type, DType::Q6_K);

        // counters: use_more_bits(i, 4) holds for i in {2, 3}, so Q4_K_M gives attn_v Q4_K, Q4_K, Q6_K, Q6_K
        // (the golden file agrees). Override only blk.0.attn_v: blk.1..3 then get rule indices 0, 1, 2,
        // so blk.2 drops to Q4_K and blk.3 stays Q6_K.
        o.tensorTypes = {{"blk\\.0\\.attn_v", DType::Q8_0}};
        r = chooseTensorTypes(bardLlama(), t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.0.attn_v.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.1.attn_v.weight").type, DType::Q4_K);  // index 0
        QCOMPARE(choiceFor(t, *r, "blk.2.attn_v.weight").type, DType::Q4_K);  // index 1
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_v.weight").type, DType::Q6_K);  // index 2: (2-0)%3 == 2

        o.tensorTypes = {{"attn_(v", DType::Q8_0}};
        QVERIFY(!chooseTensorTypes(bardLlama(), t, o).ok());
    }

    void outputAndEmbeddingOverrides() {
        auto t = llamaTensors(4, 256, 128, 768, 512, true);
        MixOptions o;
        o.ftype = FileType::MOSTLY_Q4_K_M;
        o.outputTensorType = DType::Q8_0;
        o.tokenEmbeddingType = DType::Q5_K;
        auto r = chooseTensorTypes(bardLlama(), t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "output.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "token_embd.weight").type, DType::Q5_K);
        // tied model (no output.weight): --output-tensor-type applies to token_embd unless
        // --token-embedding-type is given
        auto tied = llamaTensors(2, 256, 256, 768, 512, false);
        o.tokenEmbeddingType.reset();
        r = chooseTensorTypes(MixModelInfo{"llama", 2, 8, 8, 0}, tied, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(tied, *r, "token_embd.weight").type, DType::Q8_0);
        o.outputTensorType.reset();
        r = chooseTensorTypes(MixModelInfo{"llama", 2, 8, 8, 0}, tied, o);
        QCOMPARE(choiceFor(tied, *r, "token_embd.weight").type, DType::Q6_K);
        // --leave-output-tensor: output.weight is copied unchanged
        o.leaveOutputTensor = true;
        r = chooseTensorTypes(bardLlama(), t, o);
        QCOMPARE(choiceFor(t, *r, "output.weight").type, DType::F16);
        QVERIFY(!choiceFor(t, *r, "output.weight").quantize);
    }

    void pureMix() {
        const auto all = readTsv("bard-llama");
        auto input = asF32Tensors(rowsOf(all, "bard-llama-F32.gguf"));
        sortLlamaOrder(input);
        MixOptions o;
        o.ftype = FileType::MOSTLY_Q4_K_M;
        o.pure = true;
        auto r = chooseTensorTypes(bardLlama(), input, o);
        QVERIFY(r.ok());
        for (size_t i = 0; i < input.size(); ++i)
            QCOMPARE((*r)[i].type, input[i].ne.size() >= 2 ? DType::Q4_K : DType::F32);
        // stories260K pure Q4_K: every row length (64, 172) falls back; 64 -> Q5_0, 172 -> F16
        auto st = asF32Tensors(rowsOf(readTsv("stories260K"), "stories260K-Q2_K.gguf"));
        r = chooseTensorTypes(stories(), st, o);
        QVERIFY(r.ok());
        for (size_t i = 0; i < st.size(); ++i) {
            if (st[i].ne.size() < 2) continue;
            QCOMPARE((*r)[i].type, st[i].ne[0] == 64 ? DType::Q5_0 : DType::F16);
            QVERIFY((*r)[i].fallback);
        }
    }

    // F16/BF16/F32 "mixes": every quantizable tensor gets the default, 1-D tensors stay F32.
    void floatFileTypes() {
        auto t = llamaTensors(2, 256, 128, 768, 512, true);
        for (auto [ft, dt] : {std::pair{FileType::MOSTLY_F16, DType::F16}, std::pair{FileType::MOSTLY_BF16, DType::BF16},
                              std::pair{FileType::ALL_F32, DType::F32}}) {
            MixOptions o;
            o.ftype = ft;
            auto r = chooseTensorTypes(MixModelInfo{"llama", 2, 8, 4, 0}, t, o);
            QVERIFY(r.ok());
            for (size_t i = 0; i < t.size(); ++i) QCOMPARE((*r)[i].type, t[i].ne.size() >= 2 ? dt : DType::F32);
        }
    }

    // 70B (llama, 80 layers, GQA): attn_v Q3_K/Q4_K -> Q5_K (core/ggml/README.md C.4 rule 4).
    void llama70B() {
        auto t = llamaTensors(80, 8192, 1024, 28672, 128256, true);
        MixOptions o;
        o.ftype = FileType::MOSTLY_Q4_K_S;
        auto r = chooseTensorTypes(MixModelInfo{"llama", 80, 64, 8, 0}, t, o);
        QVERIFY(r.ok());
        for (int i : {0, 3, 4, 40, 79}) {
            QCOMPARE(choiceFor(t, *r, "blk." + std::to_string(i) + ".attn_v.weight").type, DType::Q5_K);
            QCOMPARE(choiceFor(t, *r, "blk." + std::to_string(i) + ".attn_q.weight").type, DType::Q4_K);
        }
        QCOMPARE(choiceFor(t, *r, "blk.9.ffn_down.weight").type, DType::Q5_K);   // 9 < 80/8
        QCOMPARE(choiceFor(t, *r, "blk.10.ffn_down.weight").type, DType::Q4_K);
        o.ftype = FileType::MOSTLY_Q2_K;  // n_gqa = 8 >= 4: attn_v Q4_K, then 70B bump -> Q5_K
        r = chooseTensorTypes(MixModelInfo{"llama", 80, 64, 8, 0}, t, o);
        QCOMPARE(choiceFor(t, *r, "blk.5.attn_v.weight").type, DType::Q5_K);
        // same size without GQA is not "70B": Q2_K attn_v -> Q3_K
        r = chooseTensorTypes(MixModelInfo{"llama", 80, 64, 64, 0}, t, o);
        QCOMPARE(choiceFor(t, *r, "blk.5.attn_v.weight").type, DType::Q3_K);
    }

    // 8 experts: attn_v -> Q8_0, attn_k -> Q8_0, attn_output -> Q5_K for Q4_K_M; ffn_down uses the layer
    // parsed from the name (blk.%d.), here with expert tensors ffn_down_exps ([n_ff, n_embd, 8]).
    void moeEightExperts() {
        std::vector<MixTensor> t;
        for (int i = 0; i < 8; ++i) {
            const std::string p = "blk." + std::to_string(i) + ".";
            t.push_back({p + "attn_v.weight", {4096, 1024}, DType::F16});
            t.push_back({p + "attn_k.weight", {4096, 1024}, DType::F16});
            t.push_back({p + "attn_output.weight", {4096, 4096}, DType::F16});
            t.push_back({p + "ffn_down_exps.weight", {14336, 4096, 8}, DType::F16});
            t.push_back({p + "ffn_gate_inp.weight", {4096, 8}, DType::F32});
        }
        t.push_back({"output.weight", {4096, 32000}, DType::F16});
        sortLlamaOrder(t);
        MixOptions o;
        o.ftype = FileType::MOSTLY_Q4_K_M;
        auto r = chooseTensorTypes(MixModelInfo{"llama", 8, 32, 8, 8}, t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_v.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_k.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_output.weight").type, DType::Q5_K);
        QVERIFY(!choiceFor(t, *r, "blk.3.ffn_gate_inp.weight").quantize);
        // use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2 -> {0, 3, 6, 7}
        for (int i = 0; i < 8; ++i) {
            const bool umb = i == 0 || i == 3 || i == 6 || i == 7;
            QCOMPARE(choiceFor(t, *r, "blk." + std::to_string(i) + ".ffn_down_exps.weight").type,
                     umb ? DType::Q6_K : DType::Q4_K);
        }
        // a MoE tensor without a layer number cannot be placed
        t.push_back({"ffn_down_exps.weight", {14336, 4096, 8}, DType::F16});
        QVERIFY(!chooseTensorTypes(MixModelInfo{"llama", 8, 32, 8, 8}, t, o).ok());
    }

    // Q2_K with n_gqa >= 4: attn_v -> Q4_K (core/ggml/README.md C.4 rule 4); Q2_K_S needs an imatrix for
    // its Q2_K tensors.
    void q2kGqaAndImatrixRequirement() {
        auto t = llamaTensors(8, 4096, 1024, 14336, 32000, true);
        MixOptions o;
        o.ftype = FileType::MOSTLY_Q2_K;
        auto r = chooseTensorTypes(MixModelInfo{"llama", 8, 32, 8, 0}, t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.1.attn_v.weight").type, DType::Q4_K);
        QVERIFY(!choiceFor(t, *r, "blk.1.attn_q.weight").requiresImatrix);
        o.ftype = FileType::MOSTLY_Q2_K_S;
        r = chooseTensorTypes(MixModelInfo{"llama", 8, 32, 8, 0}, t, o);
        QCOMPARE(choiceFor(t, *r, "blk.1.attn_q.weight").type, DType::Q2_K);
        QVERIFY(choiceFor(t, *r, "blk.1.attn_q.weight").requiresImatrix);
        QCOMPARE(choiceFor(t, *r, "blk.0.ffn_down.weight").type, DType::Q4_K);  // i < n/8
        QVERIFY(!choiceFor(t, *r, "token_embd.weight").requiresImatrix);
    }

    // The i-quant family with 8 experts and MXFP4_MOE, derived by hand from llama-quant.cpp (pinned release,
    // llama_tensor_get_type_impl): the IQ1/IQ2 branch handles attn_v itself (n_expert >= 4 -> Q4_K, no
    // later Q8_0 bump), attn_k (n_expert == 8 -> Q4_K), attn_output (Q5_K), ffn_down by its counter
    // (first n/8 -> Q2_K); IQ3_XXS goes through the general attn_v branch (n_gqa 4 -> Q4_K, then 8 experts
    // -> Q8_0). MXFP4_MOE: 3-D tensors MXFP4, everything else Q8_0, output Q8_0. (Dense mixes are checked
    // against llama_model_quantize's own files in test_gguf_iquant_files.)
    void iquantMixesWithExperts() {
        std::vector<MixTensor> t;
        for (int i = 0; i < 8; ++i) {
            const std::string p = "blk." + std::to_string(i) + ".";
            t.push_back({p + "attn_q.weight", {4096, 4096}, DType::F16});
            t.push_back({p + "attn_v.weight", {4096, 1024}, DType::F16});
            t.push_back({p + "attn_k.weight", {4096, 1024}, DType::F16});
            t.push_back({p + "attn_output.weight", {4096, 4096}, DType::F16});
            t.push_back({p + "ffn_down_exps.weight", {14336, 4096, 8}, DType::F16});
            t.push_back({p + "ffn_up_exps.weight", {4096, 14336, 8}, DType::F16});
        }
        t.push_back({"token_embd.weight", {4096, 32000}, DType::F16});
        t.push_back({"output.weight", {4096, 32000}, DType::F16});
        sortLlamaOrder(t);
        const MixModelInfo moe{"llama", 8, 32, 8, 8};
        MixOptions o;
        o.hasImatrix = true;
        o.ftype = FileType::MOSTLY_IQ2_XXS;
        auto r = chooseTensorTypes(moe, t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_v.weight").type, DType::Q4_K);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_k.weight").type, DType::Q4_K);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_output.weight").type, DType::Q5_K);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_q.weight").type, DType::IQ2_XXS);
        QVERIFY(choiceFor(t, *r, "blk.3.attn_q.weight").requiresImatrix);
        QCOMPARE(choiceFor(t, *r, "blk.0.ffn_down_exps.weight").type, DType::Q2_K);
        QCOMPARE(choiceFor(t, *r, "blk.1.ffn_down_exps.weight").type, DType::IQ2_XXS);
        QCOMPARE(choiceFor(t, *r, "token_embd.weight").type, DType::Q2_K);
        QCOMPARE(choiceFor(t, *r, "output.weight").type, DType::Q5_K);
        QVERIFY(!choiceFor(t, *r, "output.weight").requiresImatrix);

        o.ftype = FileType::MOSTLY_IQ3_XXS;
        r = chooseTensorTypes(moe, t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_v.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_k.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_q.weight").type, DType::IQ2_S);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_output.weight").type, DType::Q5_K);

        o.ftype = FileType::MOSTLY_MXFP4_MOE;
        r = chooseTensorTypes(moe, t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.3.ffn_down_exps.weight").type, DType::MXFP4);
        QCOMPARE(choiceFor(t, *r, "blk.3.ffn_up_exps.weight").type, DType::MXFP4);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_v.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "blk.3.attn_q.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "token_embd.weight").type, DType::Q8_0);
        QCOMPARE(choiceFor(t, *r, "output.weight").type, DType::Q8_0);
    }

    // tensor_type_fallback for the i-quants: rows not a multiple of 256 -> IQ4_NL (rows a multiple of 32)
    // or F16; the imatrix requirement follows the final type.
    void iquantShapeFallbacks() {
        auto t = llamaTensors(4, 320, 160, 768, 1000, true);
        t.push_back({"blk.0.ffn_odd.weight", {100, 64}, DType::F16});  // no rule matches: default type
        sortLlamaOrder(t);
        MixOptions o;
        o.ftype = FileType::MOSTLY_IQ2_XXS;
        auto r = chooseTensorTypes(MixModelInfo{"llama", 4, 8, 4, 0}, t, o);
        QVERIFY(r.ok());
        const auto& q = choiceFor(t, *r, "blk.1.attn_q.weight");  // 320 columns
        QCOMPARE(q.type, DType::IQ4_NL);
        QVERIFY(q.fallback);
        QVERIFY(!q.requiresImatrix);
        const auto& down = choiceFor(t, *r, "blk.1.ffn_down.weight");  // 768 columns: no fallback
        QCOMPARE(down.type, DType::IQ2_XXS);
        QVERIFY(down.requiresImatrix);
        QCOMPARE(choiceFor(t, *r, "blk.0.ffn_odd.weight").type, DType::F16);  // 100: IQ4_NL does not fit
        QCOMPARE(choiceFor(t, *r, "output.weight").type, DType::Q8_0);        // 320 % 256: Q8_0 first
        o.ftype = FileType::MOSTLY_TQ1_0;
        r = chooseTensorTypes(MixModelInfo{"llama", 4, 8, 4, 0}, t, o);
        QVERIFY(r.ok());
        QCOMPARE(choiceFor(t, *r, "blk.1.attn_q.weight").type, DType::Q4_0);
        QCOMPARE(choiceFor(t, *r, "blk.1.ffn_down.weight").type, DType::TQ1_0);
    }
};

QTEST_APPLESS_MAIN(TestMixes)
#include "test_mixes.moc"
