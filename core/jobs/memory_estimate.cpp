#include "jobs/memory_estimate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace qz {

namespace {

// Products in double: the inputs are range-checked hyper-parameters, but their products can exceed
// 64 bits for absurd settings; an estimate only needs to be large, not exact, then.
uint64_t bytesOf(double v) {
    if (!(v > 0)) return 0;
    if (v >= 1.8e19) return UINT64_MAX / 4;
    return static_cast<uint64_t>(v);
}

std::string gb(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GB", static_cast<double>(bytes) * 1e-9);
    return buf;
}

// Activations of one decoder block on n tokens: the residual, the normed input, q/k/v, the attention
// output and its projection (≈ 6 × hidden), gate / up / their product (3 × ffn), in F32.
double blockActivations(const InferHParams& hp, double n) {
    const double attn = static_cast<double>(hp.nHead) * hp.headDim;
    const double kv = static_cast<double>(hp.nHeadKv) * hp.headDim;
    return n * (3.0 * hp.nEmbd + attn * 2.0 + kv * 2.0 + 3.0 * hp.nFf) * 4.0;
}

// Attention scores: one n × n matrix per thread working on a head.
double attentionScores(double n, int threads) { return n * n * 4.0 * std::max(1, threads); }

double layerWeights(const InferHParams& hp) {
    const double attn = static_cast<double>(hp.nHead) * hp.headDim;
    const double kv = static_cast<double>(hp.nHeadKv) * hp.headDim;
    if (hp.nExpert > 0)  // mixture of experts: every expert's gate / up / down and the router
        return static_cast<double>(hp.nEmbd) *
               (2.0 * attn + 2.0 * kv + 3.0 * hp.nExpert * static_cast<double>(hp.nFfExpert) + hp.nExpert);
    return static_cast<double>(hp.nEmbd) * (2.0 * attn + 2.0 * kv + 3.0 * hp.nFf);
}

}  // namespace

uint64_t MemoryEstimate::anonBytes() const {
    uint64_t s = 0;
    for (const auto& p : parts) s += p.bytes;
    return s;
}

std::string MemoryEstimate::describe() const {
    std::vector<MemoryPart> sorted = parts;
    std::sort(sorted.begin(), sorted.end(), [](const MemoryPart& a, const MemoryPart& b) { return a.bytes > b.bytes; });
    std::string s = gb(anonBytes() + kMemoryMargin) + " (";
    bool first = true;
    for (const auto& p : sorted) {
        if (p.bytes == 0) continue;
        s += (first ? "" : ", ") + p.what + " " + gb(p.bytes);
        first = false;
    }
    s += (first ? "" : ", ") + std::string("margin ") + gb(kMemoryMargin) + ")";
    if (mappedBytes) s += " + the model file mapped (" + gb(mappedBytes) + ", file-backed)";
    return s;
}

MemoryEstimate estimateEvaluation(const InferHParams& hp, uint64_t modelFileBytes, const EvalMemorySettings& s) {
    MemoryEstimate e;
    const double n = std::max(1, s.nCtx);
    const double kv = static_cast<double>(hp.nHeadKv) * hp.headDim;
    e.parts.push_back({"KV cache", bytesOf(hp.nLayer * n * kv * 2.0 * 4.0)});
    e.parts.push_back({"activations", bytesOf(blockActivations(hp, n) + attentionScores(n, s.threads))});
    // Logits of positions nCtx/2 .. nCtx−1, which the engine writes straight into the scorer's buffer
    // (infer/perplexity.cpp evalChunk, calib/layered.cpp): one buffer, no copy.
    e.parts.push_back({"logits", bytesOf((n - std::floor(n / 2.0)) * hp.nVocab * 4.0)});
    // Rows of weights widened per thread while multiplying (64 rows of the widest input).
    e.parts.push_back(
        {"weight tiles", bytesOf(std::max(1, s.threads) * 64.0 * std::max(hp.nEmbd, hp.nFf) * 4.0)});
    // The activations of one product encoded for the weights (at most Q8_K's 292 bytes per 256 values)
    // and, with AMX, their copy in the tile layout (one byte per value, kept by the evaluating thread)
    // (ggml/vec_dot.cpp quantizedLinear).
    e.parts.push_back({"encoded activations", bytesOf(n * std::max(hp.nEmbd, hp.nFf) * (292.0 / 256.0 + 1.0))});
    // The text (as read, and tokenized: at most one token per byte, + BOS and a dummy prefix).
    const double tokens = static_cast<double>(s.textBytes) + 2.0;
    if (s.textBytes)
        e.parts.push_back({"text and its tokens", bytesOf(static_cast<double>(s.textBytes) + tokens * 4.0)});
    uint64_t mapped = modelFileBytes;
    if (!s.variants.empty()) {
        double chunks = std::floor(tokens / n);
        if (s.nChunks >= 0) chunks = std::min(chunks, static_cast<double>(s.nChunks));
        // Per chunk: its tokens, and (nCtx − 1 − nCtx/2) rows of 2 floats + nVocab uint16 (padded to even).
        const double nc = std::max(1, s.nCtx);
        const double rows = nc - 1.0 - std::floor(nc / 2.0);
        const double rowBytes = (2.0 * std::floor((hp.nVocab + 1) / 2.0) + 4.0) * 2.0;
        e.parts.push_back(
            {"original's log-probabilities", bytesOf(chunks * (nc * 4.0 + std::max(0.0, rows) * rowBytes))});
        double made = 0, largest = 0;
        for (const auto& v : s.variants) {
            const double bytes = static_cast<double>(v.overrideValues) * 4.0;
            largest = std::max(largest, bytes);
            if (!v.overridesHeld) made = s.keepMadeOverrides ? made + bytes : std::max(made, bytes);
            mapped += v.fileBytes;
        }
        if (made > 0) e.parts.push_back({"variant weights made (F32)", bytesOf(made)});
        if (largest > 0) e.parts.push_back({"engine's copy of a variant's weights (F32)", bytesOf(largest)});
    }
    e.mappedBytes = mapped;
    return e;
}

MemoryEstimate estimateCalibratedExport(const InferHParams& hp, uint64_t modelFileBytes,
                                        const CalibMemorySettings& s) {
    MemoryEstimate e;
    const double n = std::max(1, s.seqLen);
    const double attn = static_cast<double>(hp.nHead) * hp.headDim;
    e.parts.push_back({"one decoder layer in F32", bytesOf(layerWeights(hp) * 4.0)});
    // The quantizer's working copies of the largest linear layer (weights, error, result).
    const double ffn = hp.nExpert > 0 ? hp.nFfExpert : hp.nFf;
    const double largest = ffn * hp.nEmbd;
    e.parts.push_back({"quantizer working copies", bytesOf(3.0 * largest * 4.0)});
    // Hessians of the block's distinct inputs (q/k/v, o, gate/up, down), F32, plus the inverse of one.
    // Mixture of experts (gptq/README.md D.6): one gate/up and one down Hessian per expert, all held in
    // their group's pass, plus the experts' average for the fallback.
    const double experts = std::max(1, hp.nExpert);
    const double h = (1.0 + experts) * hp.nEmbd * static_cast<double>(hp.nEmbd) + attn * attn +
                     experts * ffn * ffn;
    const double widest = std::max<double>(std::max<double>(hp.nEmbd, attn), ffn);
    e.parts.push_back({"Hessians", bytesOf((h + (hp.nExpert > 0 ? 2.0 : 1.0) * widest * widest) * 4.0)});
    double states = static_cast<double>(std::max(1, s.windows)) * n * hp.nEmbd *
                    std::max(1, s.stateBytesPerValue) * (s.secondStateCopy ? 2.0 : 1.0);
    if (s.maxStateMemory > 0 && states > static_cast<double>(s.maxStateMemory)) {
        // Over the budget the states live in a file; one window's states are in memory at a time.
        states = n * hp.nEmbd * 4.0 * 2.0;
        e.parts.push_back({"calibration states (spilled to a file)", bytesOf(states)});
    } else {
        e.parts.push_back({"calibration states", bytesOf(states)});
    }
    e.parts.push_back({"activations of one window", bytesOf(blockActivations(hp, n) + attentionScores(n, 1))});
    e.mappedBytes = modelFileBytes;
    return e;
}

uint64_t availableMemoryBytes() {
    std::ifstream f("/proc/meminfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("MemAvailable:", 0) == 0) {
            std::istringstream in(line.substr(13));
            uint64_t kb = 0;
            if (in >> kb) return kb * 1024;
        }
    }
    return 0;
}

Status checkMemoryFits(const MemoryEstimate& e, uint64_t available) {
    if (available == 0) return okStatus();
    const uint64_t need = e.anonBytes() + kMemoryMargin;
    if (need <= available) return okStatus();
    return makeError("this run needs about " + e.describe() + ", but only " + gb(available) +
                     " of memory is available");
}

}  // namespace qz
