#!/usr/bin/env node
// check-gguf.mjs — load a GGUF file in real llama.cpp (the prebuilt CPU build shipped inside the npm package
// node-llama-cpp), generate a greedy continuation, and compute perplexity the way llama-perplexity does.
//
// Usage:
//   node check-gguf.mjs FILE.gguf [--text TEXT.txt] [--ctx 128] [--chunks 32] [--bos|--no-bos]
//                      [--prompt "..."] [--n 32] [--kld-base BASE.gguf] [--flash-attn on|off|auto] [--threads 1]
//                      [--dump-chunks CHUNKS.json]  (the token windows of the perplexity run, for ref_forward.py)
//   node check-gguf.mjs --self-test      (load the llama.cpp binary only, print its build, exit 0 if it works)
//
// BOS: by default a BOS token is used when the model's vocabulary says add_bos (llama_vocab_get_add_bos), as
// llama-perplexity does; --bos forces it (needed to reproduce the bard-gpt2 goldens, see README.md), --no-bos
// disables it.
//
// Perplexity (llama-perplexity's method, `perplexity()` in tools/perplexity):
//   * tokenize the whole text once (BOS prepended when the model's vocabulary says add_bos, unless --no-bos);
//   * n_chunk = min(--chunks, floor(n_tokens / n_ctx)); chunk i = tokens[i*n_ctx, (i+1)*n_ctx);
//   * the first token of every chunk is replaced by BOS (when BOS is added);
//   * each chunk is evaluated from an empty KV cache, logits for every position;
//   * with first = n_ctx/2, the tokens at positions first+1 .. n_ctx-1 are scored, each from the logits at the
//     previous position (n_ctx-1-first tokens per chunk); NLL = -log_softmax(logits)[token] accumulated in double;
//   * PPL = exp(mean NLL); error = PPL * sqrt((mean(NLL^2) - mean(NLL)^2) / (count-1)).
// KL-divergence (--kld-base, llama-perplexity --kl-divergence semantics): over the same scored positions,
// KL(P_base || P_model) from full-vocabulary softmaxes, mean / 99th percentile / max, same-top-token %,
// and RMS of the change in the probability of the actual next token (in %).
//
// Raw logits come from LlamaContextSequence.controlledEvaluate() with generateNext.logits = true on every
// position that needs them: node-llama-cpp copies llama_get_logits_ith() for that batch index into a token->logit
// map (greedy sampler only, which does not alter logits), so these are the exact float logits of llama.cpp.
//
// Output: one JSON object on stdout. Exit code 0 when the model loaded and everything ran, 1 on any error
// (the JSON then has ok=false and error). llama.cpp's log goes to stderr (warnings and errors only).

import fs from "node:fs";
import path from "node:path";
import process from "node:process";

function usage(msg) {
    if (msg)
        process.stderr.write(`check-gguf: ${msg}\n`);
    process.stderr.write("usage: node check-gguf.mjs FILE.gguf [--text TEXT.txt] [--ctx 128] [--chunks 32] [--bos|--no-bos]\n" +
        "       [--prompt TEXT] [--n 32] [--kld-base BASE.gguf] [--flash-attn on|off|auto] [--threads 1]\n" +
        "       node check-gguf.mjs --self-test\n");
    process.exit(2);
}

function parseArgs(argv) {
    const opts = {file: null, text: null, ctx: 128, chunks: 32, bos: "model", prompt: null, n: 32, kldBase: null,
        flashAttn: "auto", threads: 1, selfTest: false, dumpChunks: null};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            if (i + 1 >= argv.length)
                usage(`${a} needs a value`);
            return argv[++i];
        };
        const int = (v, name) => {
            const n = Number(v);
            if (!Number.isInteger(n) || n <= 0)
                usage(`${name} must be a positive integer, got "${v}"`);
            return n;
        };
        if (a === "--text") opts.text = next();
        else if (a === "--ctx") opts.ctx = int(next(), a);
        else if (a === "--chunks") opts.chunks = int(next(), a);
        else if (a === "--no-bos") opts.bos = "off";
        else if (a === "--bos") opts.bos = "on";
        else if (a === "--self-test") opts.selfTest = true;
        else if (a === "--prompt") opts.prompt = next();
        else if (a === "--n") opts.n = int(next(), a);
        else if (a === "--kld-base") opts.kldBase = next();
        else if (a === "--dump-chunks") opts.dumpChunks = next();
        else if (a === "--threads") opts.threads = int(next(), a);
        else if (a === "--flash-attn") {
            const v = next();
            if (!["on", "off", "auto"].includes(v))
                usage("--flash-attn must be on, off or auto");
            opts.flashAttn = v === "on" ? true : v === "off" ? false : "auto";
        } else if (a === "-h" || a === "--help") usage();
        else if (a.startsWith("--")) usage(`unknown option ${a}`);
        else if (opts.file == null) opts.file = a;
        else usage(`unexpected argument ${a}`);
    }
    if (opts.file == null && !opts.selfTest)
        usage("no GGUF file given");
    if (opts.ctx < 4 || opts.ctx % 2 !== 0)
        usage("--ctx must be even and >= 4");
    return opts;
}

// llama-perplexity's log_softmax: float max, double sum of expf(logit - max), result for one token.
function logSoftmaxAt(logits, tok) {
    let max = logits[0];
    for (let i = 1; i < logits.length; i++)
        if (logits[i] > max) max = logits[i];
    let sum = 0;
    for (let i = 0; i < logits.length; i++)
        sum += Math.fround(Math.exp(Math.fround(logits[i] - max)));
    return {logp: Math.fround(logits[tok] - max) - Math.log(sum), max, sum};
}

// Full log-softmax in double (for KL-divergence).
function logSoftmaxAll(logits) {
    let max = -Infinity, argmax = 0;
    for (let i = 0; i < logits.length; i++)
        if (logits[i] > max) { max = logits[i]; argmax = i; }
    let sum = 0;
    for (let i = 0; i < logits.length; i++)
        sum += Math.exp(logits[i] - max);
    const lse = max + Math.log(sum);
    const out = new Float64Array(logits.length);
    for (let i = 0; i < logits.length; i++)
        out[i] = logits[i] - lse;
    return {logp: out, argmax};
}

function mapToLogits(map, nVocab) {
    const out = new Float32Array(nVocab).fill(-Infinity);
    let seen = 0;
    for (const [tok, v] of map) {
        if (tok < 0 || tok >= nVocab)
            throw new Error(`logit for token ${tok} outside the vocabulary (${nVocab})`);
        out[tok] = v;
        seen++;
    }
    if (seen !== nVocab)
        throw new Error(`expected ${nVocab} logits, got ${seen}`);
    return out;
}

async function loadModel(llama, file) {
    if (!fs.existsSync(file))
        throw new Error(`${file}: no such file`);
    return await llama.loadModel({modelPath: path.resolve(file), gpuLayers: 0, useMmap: true, checkTensors: true});
}

async function createSequence(model, opts) {
    const context = await model.createContext({
        contextSize: opts.ctx, batchSize: opts.ctx, sequences: 1, threads: opts.threads,
        flashAttention: opts.flashAttn, ignoreMemorySafetyChecks: true,
    });
    return {context, sequence: context.getSequence()};
}

function nVocabOf(model) {
    const tokens = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
    if (Array.isArray(tokens) && tokens.length > 0)
        return tokens.length;
    throw new Error("cannot determine n_vocab (no tokenizer.ggml.tokens)");
}

// Evaluate every chunk; calls onPosition(chunk, pos, logits Float32Array, nextToken) for every scored position.
async function evalChunks(sequence, tokens, nCtx, nChunk, bos, nVocab, onPosition) {
    const first = nCtx / 2;
    for (let c = 0; c < nChunk; c++) {
        await sequence.clearHistory();
        const start = c * nCtx;
        const input = [];
        for (let j = 0; j < nCtx; j++) {
            let tok = tokens[start + j];
            if (j === 0 && bos != null)
                tok = bos;
            if (j >= first && j < nCtx - 1)
                input.push([tok, {generateNext: {logits: true, options: {temperature: 0}}}]);
            else
                input.push(tok);
        }
        const res = await sequence.controlledEvaluate(input);
        for (let j = first; j < nCtx - 1; j++) {
            const r = res[j];
            if (r == null || r.next?.logits == null)
                throw new Error(`no logits returned for chunk ${c} position ${j}`);
            onPosition(c, j, mapToLogits(r.next.logits, nVocab), tokens[start + j + 1]);
        }
    }
}

async function generate(sequence, model, prompt, n, bos) {
    await sequence.clearHistory();
    let input = model.tokenize(prompt, false);
    if (bos != null)
        input = [bos, ...input];
    if (input.length === 0)
        throw new Error("empty prompt");
    const out = [];
    for (let i = 0; i < n; i++) {
        if (sequence.nextTokenIndex + input.length > sequence.contextSize)
            break;
        const items = input.map((t, k) => (k === input.length - 1
            ? [t, {generateNext: {token: true, options: {temperature: 0}}}] : t));
        const res = await sequence.controlledEvaluate(items);
        const tok = res[items.length - 1]?.next?.token;
        if (tok == null)
            break;
        if (model.isEogToken(tok))
            break;
        out.push(tok);
        input = [tok];
    }
    return {tokens: out, text: model.detokenize(out, false)};
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const result = {ok: false, file: opts.file};
    const t0 = performance.now();
    let llama = null;
    try {
        const {getLlama, LlamaLogLevel, getModuleVersion} = await import("node-llama-cpp");
        llama = await getLlama({
            gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
            maxThreads: opts.threads, logLevel: LlamaLogLevel.warn,
            logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message.replace(/\n?$/, "\n")}`),
        });
        result.backend = {node_llama_cpp: await getModuleVersion(),
            llama_cpp_release: llama.llamaCppRelease?.release, build_type: llama.buildType, gpu: llama.gpu};

        if (opts.selfTest) {
            result.system_info = llama.systemInfo;
            result.ok = true;
            return finish(result, t0, llama);
        }

        const model = await loadModel(llama, opts.file);
        result.load_ok = true;
        result.load_seconds = +((performance.now() - t0) / 1000).toFixed(3);
        result.architecture = model.fileInfo?.metadata?.general?.architecture ?? null;
        result.description = model.typeDescription;
        result.n_vocab = nVocabOf(model);
        result.n_tensors = model.fileInfo?.tensorInfo?.length ?? null;
        result.n_params = model._model?.getTotalParameters?.() ?? null;
        result.size_bytes = model.size;
        result.model_adds_bos = model.tokens.shouldPrependBosToken;
        const wantBos = opts.bos === "on" || (opts.bos === "model" && model.tokens.shouldPrependBosToken);
        const bos = wantBos ? model.tokens.bos : null;
        if (wantBos && bos == null)
            throw new Error("BOS requested but the model has no BOS token");
        result.bos_used = bos != null;

        const {context, sequence} = await createSequence(model, opts);
        result.context = {n_ctx: context.contextSize, batch: context.batchSize, threads: context.currentThreads,
            flash_attention: context.flashAttention};

        if (opts.prompt != null) {
            const g = await generate(sequence, model, opts.prompt, opts.n, bos);
            result.generation = {prompt: opts.prompt, n_tokens: g.tokens.length, text: g.text, tokens: g.tokens};
        }

        if (opts.text != null) {
            const t1 = performance.now();
            let text = fs.readFileSync(opts.text, "utf8");
            // llama.cpp's -f drops one trailing newline of the prompt file.
            if (text.endsWith("\n"))
                text = text.slice(0, -1);
            let tokens = Array.from(model.tokenize(text, false));
            if (bos != null)
                tokens = [bos, ...tokens];
            const nCtx = opts.ctx;
            if (tokens.length < 2 * nCtx)
                throw new Error(`text has ${tokens.length} tokens, need at least ${2 * nCtx} (2*n_ctx)`);
            const nChunk = Math.min(opts.chunks, Math.floor(tokens.length / nCtx));
            const nVocab = result.n_vocab;
            if (opts.dumpChunks != null) {
                // The exact token windows evaluated (first token replaced by BOS), for an independent reference.
                const chunks = [];
                for (let c = 0; c < nChunk; c++) {
                    const w = tokens.slice(c * nCtx, (c + 1) * nCtx);
                    if (bos != null)
                        w[0] = bos;
                    chunks.push(w);
                }
                fs.writeFileSync(opts.dumpChunks, JSON.stringify({n_ctx: nCtx, first: nCtx / 2, chunks}));
            }

            let base = null;
            if (opts.kldBase != null) {
                // Base logits first (same context settings), kept as full log-softmax per scored position.
                const bModel = await loadModel(llama, opts.kldBase);
                const bv = nVocabOf(bModel);
                if (bv !== nVocab)
                    throw new Error(`KLD base has n_vocab ${bv}, model has ${nVocab}`);
                const {context: bctx, sequence: bseq} = await createSequence(bModel, opts);
                base = [];
                let bnll = 0;
                await evalChunks(bseq, tokens, nCtx, nChunk, bos, nVocab, (c, j, logits, next) => {
                    const ls = logSoftmaxAll(logits);
                    bnll -= ls.logp[next];
                    base.push(ls);
                });
                base.pplBase = Math.exp(bnll / base.length);
                await bctx.dispose();
                await bModel.dispose();
            }

            let nll = 0, nll2 = 0, count = 0;
            const klds = [];
            let sameTop = 0, dp2 = 0;
            await evalChunks(sequence, tokens, nCtx, nChunk, bos, nVocab, (c, j, logits, next) => {
                const v = logSoftmaxAt(logits, next).logp;
                nll -= v;
                nll2 += v * v;
                if (base != null) {
                    const b = base[count];
                    const m = logSoftmaxAll(logits);
                    let kld = 0;
                    for (let t = 0; t < nVocab; t++) {
                        const pb = Math.exp(b.logp[t]);
                        if (pb > 0)
                            kld += pb * (b.logp[t] - m.logp[t]);
                    }
                    klds.push(kld);
                    if (m.argmax === b.argmax) sameTop++;
                    const d = Math.exp(m.logp[next]) - Math.exp(b.logp[next]);
                    dp2 += d * d;
                }
                count++;
            });
            const meanNll = nll / count;
            const ppl = Math.exp(meanNll);
            const var_ = nll2 / count - meanNll * meanNll;
            const err = var_ > 0 ? ppl * Math.sqrt(var_ / (count - 1)) : null;
            result.perplexity = {text: opts.text, n_tokens_text: tokens.length, n_ctx: nCtx, n_chunk: nChunk,
                scored_per_chunk: nCtx - 1 - nCtx / 2, scored: count, mean_nll: meanNll, ppl, ppl_err: err,
                seconds: +((performance.now() - t1) / 1000).toFixed(3)};
            if (base != null) {
                const sorted = klds.slice().sort((a, b) => a - b);
                const pct = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
                result.kld = {base: opts.kldBase, ppl_base: base.pplBase,
                    mean: klds.reduce((a, b) => a + b, 0) / klds.length, p99: pct(0.99), max: sorted[sorted.length - 1],
                    same_top_pct: 100 * sameTop / klds.length, rms_dp_pct: 100 * Math.sqrt(dp2 / klds.length)};
            }
        }
        await context.dispose();
        await model.dispose();
        result.ok = true;
    } catch (e) {
        result.ok = false;
        result.error = String(e?.message ?? e);
    }
    return finish(result, t0, llama);
}

async function finish(result, t0, llama) {
    result.total_seconds = +((performance.now() - t0) / 1000).toFixed(3);
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    if (llama != null)
        await llama.dispose().catch(() => {});
    process.exit(result.ok ? 0 : 1);
}

main();
