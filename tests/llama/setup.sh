#!/usr/bin/env bash
# setup.sh — install the llama.cpp test harness (npm package node-llama-cpp with its prebuilt linux-x64 CPU
# binaries) into tests/llama/node_modules from package-lock.json. Idempotent: when node_modules already matches
# the lock file (stamp file) nothing is run and no network is needed.
#
# Nothing is compiled and nothing is downloaded except the npm packages named in package-lock.json:
#   * `npm ci --omit=optional` skips the CUDA/Vulkan/other-platform binary packages (only the CPU package
#     @node-llama-cpp/linux-x64 is a direct, non-optional dependency);
#   * `--ignore-scripts` + NODE_LLAMA_CPP_SKIP_DOWNLOAD=true: node-llama-cpp's postinstall (which could try to
#     download and build llama.cpp when no prebuilt binary fits) never runs;
#   * the checker calls getLlama({build: "never", skipDownload: true, gpu: false}).
# Needs Node.js >= 20 (node-llama-cpp's "engines"). Debian 12's own nodejs package is 18.x, too old: when node is
# missing this script installs Debian's nodejs/npm only if that gives a new enough version, otherwise it fails
# with a message.
#
# Env: QZ_LLAMA_FORCE=1 reinstalls even when the stamp matches.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

log() { printf 'llama-setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        candidate="$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ {print $2}')"
        log "node/npm missing; Debian candidate nodejs version: ${candidate:-none}"
        case "$candidate" in
            ""|"(none)") die "no nodejs package available; install Node.js >= 20" ;;
        esac
        if [ "${candidate%%.*}" -lt 20 ] 2>/dev/null; then
            die "Debian's nodejs is $candidate but node-llama-cpp needs Node.js >= 20; install Node.js 20+"
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm >&2
    else
        die "node/npm not found; install Node.js >= 20 with npm"
    fi
fi

major="$(node_major)"
[ "$major" -ge 20 ] || die "Node.js $(node --version) is too old; node-llama-cpp needs >= 20"

export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

stamp_file="node_modules/.qz-llama-stamp"
want_stamp="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$(node --version)"
addon="node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node"

# Several build directories may run the ctest fixture at the same time on one source tree: serialise.
exec 9>"$here/.setup.lock"
if command -v flock >/dev/null 2>&1; then
    flock -w 600 9 || die "timed out waiting for another setup.sh"
fi

if [ "${QZ_LLAMA_FORCE:-0}" != 1 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ] \
        && [ -f "$addon" ]; then
    log "node_modules up to date ($(cut -c1-12 "$stamp_file")...), nothing to do"
else
    start=$(date +%s.%N)
    log "npm ci (node $(node --version), npm $(npm --version))"
    npm ci --omit=optional --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=warn >&2 \
        || die "npm ci failed"
    [ -f "$addon" ] || die "prebuilt binary $addon missing after npm ci"
    printf '%s\n' "$want_stamp" > "$stamp_file"
    log "npm ci done in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s;" \
        "node_modules: $(du -sh node_modules | cut -f1)"
fi

# Prove that the prebuilt llama.cpp binary loads on this CPU (no download, no build).
errf="$(mktemp)"
trap 'rm -f "$errf"' EXIT
if ! out="$(node check-gguf.mjs --self-test 2>"$errf")"; then
    printf '%s\n' "$out" >&2
    cat "$errf" >&2
    die "node-llama-cpp's prebuilt binary does not load here"
fi
log "llama.cpp binary OK: $(printf '%s' "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
    const j=JSON.parse(s);console.log(`node-llama-cpp ${j.backend.node_llama_cpp},` +
    ` llama.cpp ${j.backend.llama_cpp_release}, ${j.backend.build_type}, gpu=${j.backend.gpu}`)})')"
