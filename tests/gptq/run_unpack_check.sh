#!/usr/bin/env bash
# Exports a test model with quantzoo-cli (GPTQ, small calibration) and checks it with unpack_check.py
# (Debian's python3-numpy / python3-torch: .ci/deps.sh installs them; missing -> the test fails).
# usage: run_unpack_check.sh CLI MODEL_DIR CALIB_TEXT WORKDIR BITS GROUP_SIZE SYM(0/1) DESC_ACT(0/1) [extra cli args]
set -euo pipefail
cli=$1 model=$2 calib=$3 work=$4 bits=$5 gs=$6 sym=$7 desc=$8
shift 8
py=/usr/bin/python3
"$py" -c "import numpy, torch" || { echo "FAIL: $py lacks numpy/torch (apt-get install python3-numpy python3-torch)"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
out="$work/out"
args=(export "$model" --format gptq --bits "$bits" --group-size "$gs" --calib "$calib" --samples 4 --seq-len 64
      --seed 7 --no-true-sequential --quiet --dump-dequant "$work/dequant.safetensors" -o "$out")
[ "$sym" = 1 ] && args+=(--sym) || args+=(--asym)
[ "$desc" = 1 ] && args+=(--desc-act)
"$cli" "${args[@]}" "$@"
"$py" "$(dirname "$0")/unpack_check.py" "$out" "$work/dequant.safetensors" "$model" "$bits" "$gs" "$sym" "$desc"
rm -rf "$work"
