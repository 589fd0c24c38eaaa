#!/usr/bin/env bash
# run-llama-tests.sh — ctest driver: prove that a GGUF file loads and runs in real llama.cpp (node-llama-cpp's
# prebuilt CPU build) and that its perplexity matches an expected value.
#
#   run-llama-tests.sh FILE.gguf EXPECTED_PPL REL_TOL [checker options...]
#     (EXPECTED_PPL "-": no comparison; the file must load, generate and give a finite perplexity)
#   run-llama-tests.sh --expect-load-failure FILE.gguf
#
# The second form is the harness's own negative test: exit 0 only if llama.cpp itself started (binary OK) and
# then refused to load FILE (so a broken harness cannot pass it the way WILL_FAIL would).
#
# Checker options are passed to check-gguf.mjs after the defaults, e.g. --bos / --no-bos, --prompt TEXT,
# --n 32, --kld-base BASE.gguf, --ctx 128, --chunks 32, --text FILE.
# Defaults: --text <repo>/tests/data/text/shakespeare-valid.txt --ctx 128 --chunks 32 --prompt "ROMEO:" --n 16
# (the settings of the goldens' ppl.tsv). Env QZ_LLAMA_TEXT overrides the text file.
#
# Exit 0 only if: the file loaded, the greedy continuation is non-empty, the perplexity is finite and
# |ppl - EXPECTED| <= REL_TOL * EXPECTED. Exit 1 otherwise (also when node_modules is missing: run setup.sh —
# a missing harness is a failure, never a silent pass). Prints the figures either way.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

fail() { echo "FAIL: $*"; exit 1; }

if [ "${1:-}" = "--expect-load-failure" ] && [ $# -eq 2 ]; then
    [ -f "$2" ] || fail "$2: no such file"
    [ -f "$here/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ] \
        || fail "node-llama-cpp is not installed: run tests/llama/setup.sh"
    json="$(NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node "$here/check-gguf.mjs" "$2" 2>/dev/null)"
    printf '%s\n' "$json" | node -e '
let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
    let j; try { j = JSON.parse(s); } catch (e) { console.log("FAIL: checker printed no JSON"); process.exit(1); }
    const started = j.backend && j.backend.build_type === "prebuilt";
    console.log(`file: ${j.file}\nllama.cpp started: ${!!started}\nload_ok: ${!!j.load_ok}\nerror: ${j.error}`);
    if (!started) { console.log("FAIL: llama.cpp did not start, so this proves nothing"); process.exit(1); }
    if (j.load_ok || j.ok) { console.log("FAIL: llama.cpp loaded a file it should refuse"); process.exit(1); }
    console.log("PASS (llama.cpp refused the file)");
});'
    exit $?
fi

if [ $# -lt 3 ]; then
    echo "usage: $0 FILE.gguf EXPECTED_PPL REL_TOL [check-gguf options...]" >&2
    echo "       $0 --expect-load-failure FILE.gguf" >&2
    exit 2
fi
file="$1"; expected="$2"; tol="$3"; shift 3

[ -f "$file" ] || fail "$file: no such file"
command -v node >/dev/null 2>&1 || fail "node not found (tests/llama/setup.sh needs Node.js >= 20)"
[ -f "$here/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ] \
    || fail "node-llama-cpp is not installed: run tests/llama/setup.sh (the ctest fixture llama_setup does)"

text="${QZ_LLAMA_TEXT:-$here/../data/text/shakespeare-valid.txt}"
out="$(mktemp)"; err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT

export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
start=$(date +%s.%N)
node "$here/check-gguf.mjs" "$file" --text "$text" --ctx 128 --chunks 32 --prompt "ROMEO:" --n 16 "$@" \
    >"$out" 2>"$err"
rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
if [ -s "$err" ]; then
    echo "--- llama.cpp / node messages:"
    tail -n 20 "$err"
fi

# Judge the JSON (node is there for sure; jq may not be).
EXPECTED="$expected" TOL="$tol" RC="$rc" SECS="$secs" node -e '
const fs = require("fs");
const raw = fs.readFileSync(process.argv[1], "utf8");
let j;
try { j = JSON.parse(raw); } catch (e) {
    console.log("FAIL: checker printed no JSON (exit code " + process.env.RC + ")\n" + raw.slice(0, 2000));
    process.exit(1);
}
const exp = Number(process.env.EXPECTED), tol = Number(process.env.TOL);
const problems = [];
const anyPpl = process.env.EXPECTED === "-";  // load, generate and a finite perplexity only
if (!anyPpl && (!(exp > 0) || !(tol >= 0))) problems.push(`bad EXPECTED_PPL/REL_TOL arguments: ${process.env.EXPECTED} ${process.env.TOL}`);
if (!j.ok) problems.push(`checker error: ${j.error}`);
if (!j.load_ok) problems.push("model did not load");
const g = j.generation;
if (!g || !(g.n_tokens > 0) || typeof g.text !== "string" || g.text.trim() === "")
    problems.push("greedy generation produced no text");
const p = j.perplexity;
const ppl = p ? p.ppl : NaN;
if (!Number.isFinite(ppl)) problems.push("perplexity missing or not finite");
const rel = (ppl - exp) / exp;
if (!anyPpl && Number.isFinite(ppl) && !(Math.abs(rel) <= tol))
    problems.push(`perplexity ${ppl.toFixed(4)} differs from expected ${exp} by ${(rel * 100).toFixed(3)}% (tolerance ${(tol * 100).toFixed(3)}%)`);
const b = j.backend || {};
console.log(`file:        ${j.file}`);
console.log(`llama.cpp:   node-llama-cpp ${b.node_llama_cpp}, llama.cpp ${b.llama_cpp_release}, ${b.build_type}, gpu=${b.gpu}`);
console.log(`model:       ${j.description ?? "?"}, arch ${j.architecture ?? "?"}, n_vocab ${j.n_vocab ?? "?"}, n_tensors ${j.n_tensors ?? "?"}, bos ${j.bos_used}`);
if (g) console.log(`generation:  ${g.n_tokens} tokens: ${JSON.stringify(g.prompt + g.text)}`);
if (p) console.log(`perplexity:  ${ppl.toFixed(4)} +/- ${p.ppl_err?.toFixed(5)} over ${p.n_chunk} chunks of ${p.n_ctx} (${p.scored} scored tokens); ` +
    (anyPpl ? "not compared" : `expected ${exp}, rel diff ${(rel * 100).toFixed(4)}%, tol ${(tol * 100).toFixed(3)}%`));
if (j.kld) console.log(`kld:         mean ${j.kld.mean.toExponential(4)}, p99 ${j.kld.p99.toExponential(4)}, max ${j.kld.max.toExponential(4)}, same top ${j.kld.same_top_pct.toFixed(3)}%, rms dp ${j.kld.rms_dp_pct.toFixed(3)}% (base ppl ${j.kld.ppl_base.toFixed(4)})`);
console.log(`time:        ${process.env.SECS} s wall (load ${j.load_seconds} s, perplexity ${p?.seconds} s)`);
if (problems.length) { for (const m of problems) console.log("FAIL: " + m); process.exit(1); }
console.log("PASS");
' "$out"
