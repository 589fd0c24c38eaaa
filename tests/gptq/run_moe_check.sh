#!/usr/bin/env bash
# GPTQ export of a tiny mixture-of-experts model (tests/core/tiny_archs.h) checked independently:
# unpack_check.py (AutoGPTQ's dequantization equals QuantZoo's dump; every expert of every block quantized,
# the router not; modules_in_block_to_quantize) writes the AutoGPTQ-dequantized model as an F32 folder, for
# the GPTQ export and for the round-to-nearest export of the same grid (--rtn-only), and moe_ppl_kld.py
# (tests/tools/ref_forward.py: numpy, transformers' semantics) computes the perplexity of the original and of
# both dequantized models, and their KL-divergence from the original, on the same chunks.
# Prints the GPTQ export's report and the figures as JSON lines (REPORT, EVAL).
# usage: run_moe_check.sh CLI MODEL_DIR CALIB_TEXT CHUNKS_JSON WORKDIR [extra cli args for the GPTQ export]
set -euo pipefail
cli=$1 model=$2 calib=$3 chunks=$4 work=$5
shift 5
py=/usr/bin/python3
"$py" -c "import numpy, torch" || { echo "FAIL: $py lacks numpy/torch (apt-get install python3-numpy python3-torch)"; exit 1; }
here=$(dirname "$0")
rm -rf "$work"
mkdir -p "$work"
"$cli" export "$model" --format gptq --bits 4 --group-size 128 --sym --calib "$calib" --samples 24 --seq-len 64 \
    --seed 7 --quiet --report "$work/report.json" --dump-dequant "$work/gptq.safetensors" -o "$work/gptq" "$@"
"$cli" export "$model" --format gptq --bits 4 --group-size 128 --sym --rtn-only --quiet \
    --dump-dequant "$work/rtn.safetensors" -o "$work/rtn"
"$py" "$here/unpack_check.py" "$work/gptq" "$work/gptq.safetensors" "$model" 4 128 1 0 --write-dequant "$work/deq-gptq"
"$py" "$here/unpack_check.py" "$work/rtn" "$work/rtn.safetensors" "$model" 4 128 1 0 --write-dequant "$work/deq-rtn"
report=$(tr -d '\n' < "$work/report.json")
figures=$("$py" "$here/moe_ppl_kld.py" "$chunks" "$model" "$work/deq-gptq" "$work/deq-rtn")
echo "REPORT $report"
echo "EVAL ${figures//$work\//}"
rm -rf "$work"
