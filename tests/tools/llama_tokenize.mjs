#!/usr/bin/env node
// llama_tokenize.mjs — tokenize a text file with real llama.cpp (the prebuilt CPU build inside the npm package
// node-llama-cpp, installed by tests/llama/setup.sh) and print the token ids, one line, space separated.
// Used to make the expected ids in tests/data/golden/<model>/*-tokens.txt independently of QuantZoo's tokenizer.
//
// Usage: node tests/tools/llama_tokenize.mjs MODEL.gguf TEXT.txt
//        node tests/tools/llama_tokenize.mjs MODEL.gguf --inp TESTS.inp   (llama.cpp's test-tokenizer-0 layout:
//        inputs separated by "\n__ggml_vocab_test__\n"; prints one line of ids per input, each id preceded by a space)
// (the model's vocab only is loaded; no BOS is added; special-token text is not parsed)
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import {createRequire} from "node:module";
import {pathToFileURL, fileURLToPath} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const harness = path.resolve(here, "../llama/node_modules/node-llama-cpp/dist/index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(harness).href);

const inpMode = process.argv.length === 5 && process.argv[3] === "--inp";
if (process.argv.length !== 4 && !inpMode) {
    process.stderr.write("usage: node llama_tokenize.mjs MODEL.gguf TEXT.txt\n");
    process.exit(2);
}
const llama = await getLlama({build: "never", skipDownload: true, gpu: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: path.resolve(process.argv[2]), gpuLayers: 0, vocabOnly: true});
if (inpMode) {
    const parts = fs.readFileSync(process.argv[4], "utf8").split("\n__ggml_vocab_test__\n");
    parts.pop();  // text after the last separator
    for (const t of parts)
        process.stdout.write(Array.from(model.tokenize(t, false)).map((x) => " " + x).join("") + "\n");
} else {
    const text = fs.readFileSync(process.argv[3], "utf8");
    const ids = Array.from(model.tokenize(text, false));
    process.stdout.write(ids.join(" ") + "\n");
}
await model.dispose();
await llama.dispose();
