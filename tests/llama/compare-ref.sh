#!/usr/bin/env bash
# compare-ref.sh — llama.cpp's perplexity on our GGUF export of a Hugging Face folder against an independent
# reference forward pass of the folder itself (tests/tools/ref_forward.py, numpy, written from transformers'
# modeling code), on the very token windows llama.cpp evaluated. A conversion that loses or misplaces a
# tensor, a norm offset, an expert order or a fused split changes the perplexity far beyond the tolerance.
#
#   compare-ref.sh HF_DIR FILE.gguf REL_TOL [check-gguf options...]
#
# Exit 0 only if both ran and |ppl_llama - ppl_ref| <= REL_TOL * ppl_ref. llama.cpp keeps K/V in F16 and
# computes in F32; the reference in float64: the tolerance covers that rounding.
# With QZ_CLI=path/to/quantzoo-cli in the environment, our engine's perplexity on the HF folder
# (`quantzoo-cli perplexity HF_DIR -c CTX --chunks N`, llama.cpp emulation on) must also lie within
# REL_TOL of llama.cpp's on the GGUF. QZ_CLI_ON=gguf runs it on the GGUF instead (for tiny models whose
# folder tokenizes differently from their GGUF, core/infer/README.md "Known differences"); QZ_CLI_ARGS adds
# options to quantzoo-cli perplexity (e.g. --f32-attention).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail() { echo "FAIL: $*"; exit 1; }
[ $# -ge 3 ] || { echo "usage: $0 HF_DIR FILE.gguf REL_TOL [check-gguf options...]" >&2; exit 2; }
dir="$1"; file="$2"; tol="$3"; shift 3
[ -f "$file" ] || fail "$file: no such file"
[ -f "$here/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ] \
    || fail "node-llama-cpp is not installed: run tests/llama/setup.sh"
# Debian's python3 (python3-numpy), not a user's other python earlier in PATH.
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
"$py" -c "import numpy" 2>/dev/null || fail "$py with numpy is needed (python3-numpy)"
text="${QZ_LLAMA_TEXT:-$here/../data/text/shakespeare-valid.txt}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
node "$here/check-gguf.mjs" "$file" --text "$text" --n 1 --prompt "A" --dump-chunks "$tmp/chunks.json" "$@" \
    >"$tmp/llama.json" 2>"$tmp/err" || { tail -n 20 "$tmp/err"; cat "$tmp/llama.json"; fail "llama.cpp run failed"; }
"$py" "$here/../tools/ref_forward.py" "$dir" "$tmp/chunks.json" >"$tmp/ref.json" || fail "reference failed"
TOL="$tol" node -e '
const fs = require("fs");
const l = JSON.parse(fs.readFileSync(process.argv[1], "utf8")), r = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const pl = l.perplexity?.ppl, pr = r.ppl, tol = Number(process.env.TOL);
const rel = (pl - pr) / pr;
console.log(`llama.cpp:  ppl ${pl} over ${l.perplexity?.scored} tokens (${l.architecture})\nreference:  ppl ${pr} over ${r.scored} tokens\nrel diff:   ${(rel * 100).toFixed(4)}% (tolerance ${(tol * 100).toFixed(3)}%)`);
if (!(l.perplexity?.scored === r.scored)) { console.log("FAIL: different scored token counts"); process.exit(1); }
if (!(Number.isFinite(pl) && Number.isFinite(pr) && Math.abs(rel) <= tol)) { console.log("FAIL"); process.exit(1); }
console.log("PASS");' "$tmp/llama.json" "$tmp/ref.json" || exit 1
[ -n "${QZ_CLI:-}" ] || exit 0
ctx=128; chunks=32; args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --ctx) ctx="${args[i+1]}" ;;
        --chunks) chunks="${args[i+1]}" ;;
    esac
done
qzmodel="$dir"; [ "${QZ_CLI_ON:-}" = gguf ] && qzmodel="$file"
# shellcheck disable=SC2086  # QZ_CLI_ARGS is a list of options
"$QZ_CLI" perplexity "$qzmodel" -f "$text" -c "$ctx" --chunks "$chunks" --quiet ${QZ_CLI_ARGS:-} >"$tmp/qz.txt" 2>"$tmp/qz.err" \
    || { cat "$tmp/qz.err"; fail "quantzoo-cli perplexity failed"; }
QZ_MODEL="$qzmodel" TOL="$tol" node -e '
const fs = require("fs");
const l = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const m = /Final estimate: PPL = ([0-9.]+)/.exec(fs.readFileSync(process.argv[2], "utf8"));
const pl = l.perplexity?.ppl, pq = m ? Number(m[1]) : NaN, tol = Number(process.env.TOL);
const rel = (pq - pl) / pl;
console.log(`quantzoo:   ppl ${pq} (engine on ${process.env.QZ_MODEL})\nrel diff:   ${(rel * 100).toFixed(4)}% vs llama.cpp (tolerance ${(tol * 100).toFixed(3)}%)`);
if (!(Number.isFinite(pq) && Math.abs(rel) <= tol)) { console.log("FAIL"); process.exit(1); }
console.log("PASS");' "$tmp/llama.json" "$tmp/qz.txt"
