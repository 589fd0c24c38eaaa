#!/usr/bin/env bash
# target-vs-mix.sh — ctest driver: at the byte sizes of llama-quantize's standard mixes, the file that
# `quantzoo-cli export --target-size` writes has a lower KL-divergence than the standard mix, both
# measured by real llama.cpp (check-gguf.mjs --kld-base, llama-perplexity's KLD) against the model's F32
# export on the validation text (-c 128, 32 chunks).
#
#   target-vs-mix.sh QUANTZOO_CLI MODEL IMATRIX OUTDIR MIX...
#
# Environment QZ_TARGET_ARGS: more options for the target-size export (e.g. "--kld-text TRAIN.txt").
# Both files use the same importance matrix. Exit 0 only if every target-size file is no larger than its
# mix's file and has the lower mean KLD; the figures are printed either way.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail() { echo "FAIL: $*"; exit 1; }
[ $# -ge 5 ] || { echo "usage: $0 QUANTZOO_CLI MODEL IMATRIX OUTDIR MIX..." >&2; exit 2; }
cli="$1"; model="$2"; imatrix="$3"; out="$4"; shift 4
[ -f "$here/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ] \
    || fail "node-llama-cpp is not installed: run tests/llama/setup.sh (the ctest fixture llama_setup does)"
mkdir -p "$out" || fail "cannot create $out"
text="$here/../data/text/shakespeare-valid.txt"
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

base="$out/tvm-F32.gguf"
rm -f "$base"
"$cli" export "$model" --format gguf --type F32 -o "$base" --quiet || fail "F32 export failed"

# mean KLD of FILE against the F32 file, from llama.cpp
kld() {
    node "$here/check-gguf.mjs" "$1" --text "$text" --ctx 128 --chunks 32 --kld-base "$base" 2>/dev/null |
        node -e 'let s=""; process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);
            if(!j.ok||!j.kld){console.log("ERR "+(j.error||"no kld"));return;} console.log(j.kld.mean);}
            catch(e){console.log("ERR no JSON");}});'
}

status=0
for mix in "$@"; do
    std="$out/tvm-$mix.gguf"; tgt="$out/tvm-$mix-target.gguf"
    rm -f "$std" "$tgt"
    "$cli" export "$model" --format gguf --type "$mix" --imatrix "$imatrix" -o "$std" --quiet || fail "$mix export failed"
    size=$(stat -c %s "$std")
    # shellcheck disable=SC2086
    "$cli" export "$model" --format gguf --target-size "$size" --imatrix "$imatrix" -o "$tgt" --quiet ${QZ_TARGET_ARGS:-} >/dev/null \
        || fail "target-size export at $size bytes failed"
    tsize=$(stat -c %s "$tgt")
    ks=$(kld "$std"); kt=$(kld "$tgt")
    case "$ks$kt" in *ERR*) fail "llama.cpp: $mix: $ks / target: $kt" ;; esac
    verdict=$(awk -v a="$kt" -v b="$ks" -v sa="$tsize" -v sb="$size" 'BEGIN { print (a < b && sa <= sb) ? "ok" : "WORSE" }')
    printf '%-7s standard %9d bytes KLD %.6f | target size %9d bytes KLD %.6f  %s\n' "$mix" "$size" "$ks" "$tsize" "$kt" "$verdict"
    [ "$verdict" = ok ] || status=1
done
[ $status -eq 0 ] && echo PASS || echo "FAIL: a target-size file is not better than its standard mix"
exit $status
