#!/usr/bin/env bash
# GPTQ export of a tiny mixture-of-experts model (tests/core/tiny_archs.h) checked independently:
# unpack_check.py (AutoGPTQ's dequantization equals QuantZoo's dump; every expert of every block quantized,
# the router not; modules_in_block_to_quantize) writes the AutoGPTQ-dequantized model as an F32 folder, and
# ref_forward.py (numpy, transformers' semantics) computes the perplexity of the original and of the
# dequantized model on the same chunks. Prints the export's report and both perplexities as JSON lines.
# usage: run_moe_check.sh CLI MODEL_DIR CALIB_TEXT CHUNKS_JSON WORKDIR [extra cli args]
set -euo pipefail
cli=$1 model=$2 calib=$3 chunks=$4 work=$5
shift 5
py=/usr/bin/python3
"$py" -c "import numpy, torch" || { echo "FAIL: $py lacks numpy/torch (apt-get install python3-numpy python3-torch)"; exit 1; }
here=$(dirname "$0")
rm -rf "$work"
mkdir -p "$work"
"$cli" export "$model" --format gptq --bits 4 --group-size 128 --sym --calib "$calib" --samples 24 --seq-len 64 \
    --seed 7 --rtn --quiet --report "$work/report.json" --dump-dequant "$work/dequant.safetensors" -o "$work/out" "$@"
"$py" "$here/unpack_check.py" "$work/out" "$work/dequant.safetensors" "$model" 4 128 1 0 --write-dequant "$work/deq"
report=$(tr -d '\n' < "$work/report.json")
ppl0=$("$py" "$here/../tools/ref_forward.py" "$model" "$chunks")
ppl1=$("$py" "$here/../tools/ref_forward.py" "$work/deq" "$chunks")
echo "REPORT $report"
echo "PPL_ORIGINAL $ppl0"
echo "PPL_DEQUANT $ppl1"
rm -rf "$work"
