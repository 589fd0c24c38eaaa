#include "calibrated_export_util.h"

#include <algorithm>
#include <cstdio>

#include "commands.h"
#include "calib/layered.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "io/safetensors_writer.h"
#include "progress_line.h"

namespace qzcli {

qz::Status dumpDequant(const std::string& path, const qz::WeightOverrides& ov, const qz::Model& model) {
    std::vector<qz::SafetensorsTensorDecl> decls;
    std::vector<const std::vector<float>*> data;
    for (const auto& t : model.tensors) {  // model order, quantized weights only
        auto it = ov.find(t.name);
        if (it == ov.end() || t.shape.size() != 2) continue;
        decls.push_back({t.name, qz::DType::F32, t.shape});
        data.push_back(&it->second);
    }
    qz::SafetensorsWriter w;
    if (auto s = w.open(path, decls); !s) return s;
    for (const auto* d : data)
        if (auto s = w.writeTensorFromF32(*d); !s) return s;
    return w.finish();
}

int printPerplexities(const qz::Model& model, const std::string& evalPath, int ctx, int chunks, int threads,
                      bool quiet, const std::vector<EvalVariant>& variants, uint64_t maxStateMemory) {
    auto fail = [](const std::string& msg) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", msg.c_str());
        return static_cast<int>(kFailed);
    };
    std::FILE* f = std::fopen(evalPath.c_str(), "rb");
    if (!f) return fail("cannot open " + evalPath);
    std::string text;
    char buf[65536];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
    std::fclose(f);
    auto in = qz::tokenizeForPerplexity(model, text);
    if (!in) return fail(in.error().message);
    for (const EvalVariant& v : variants) {
        qz::EngineOptions eo;
        eo.threads = threads;
        eo.overrides = v.overrides;
        auto eng = qz::Engine::load(model, eo);
        if (!eng) return fail(eng.error().message);
        qz::PerplexityParams pp = in->params;
        pp.nCtx = std::min(ctx, (*eng)->nCtxMax());
        pp.nChunks = chunks;
        ProgressLine pl("ppl " + v.label, quiet);
        qz::Result<qz::PerplexityResult> r = qz::makeError("");
        if (v.blockWeights) {
            qz::Engine& e = **eng;
            std::vector<std::string> installed;
            qz::calib::BlockWeights bw;
            bw.install = [&](int b) -> qz::Status {
                auto w = v.blockWeights(b);
                if (!w) return w.error();
                for (const auto& [name, values] : *w) {
                    if (auto s = e.setWeight(name, values); !s) return s;
                    installed.push_back(name);
                }
                return qz::okStatus();
            };
            bw.release = [&](int) -> qz::Status {
                for (const auto& name : installed)
                    if (auto s = e.resetWeight(name); !s) return s;
                installed.clear();
                return qz::okStatus();
            };
            r = qz::calib::perplexityLayered(e, in->tokens, pp, bw, maxStateMemory, {}, pl.callback());
        } else {
            r = qz::computePerplexity(**eng, in->tokens, pp, pl.callback());
        }
        pl.finish();
        if (!r) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", r.error().message.c_str());
            return r.error().cancelled ? kCancelled : kFailed;
        }
        std::printf("perplexity %-8s (ctx %d, %d chunks): %s\n", v.label.c_str(), r->nCtx, r->nChunks,
                    qz::formatFinalEstimate(*r).c_str());
    }
    return kOk;
}

}  // namespace qzcli
