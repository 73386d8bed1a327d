#!/usr/bin/env bash
# Every GPU check and benchmark in one call, for a lent device (see README, "GPU checks").
# Writes results under $OUT (or bench/results/gpu when OUT is unset). Run from the repository root:
#   bash bench/gpu_check.sh
# The device image has torch, onnx, onnxruntime, opencv and pytest but not every package the checks
# import: `bash bench/device_wheels.sh` (here, with a registry) fetches the rest into .whl/, which this
# script installs first when it is there (carry .whl with the working tree).
# At most five files land in $OUT (a device call returns eight): log.txt and four JSON reports. Each step
# has a timeout; together they stay under 540 s, inside a 600 s device command.
set -uo pipefail
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"
log="$out/log.txt"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: run with a timeout, its output and exit status appended to the log
  local name=$1 seconds=$2
  shift 2
  {
    echo "=== $name (timeout ${seconds}s) $(date -u +%T)"
    timeout "$seconds" "$@" 2>&1
    echo "=== $name rc=$? $(date -u +%T)"
  } >> "$log"
}
site_packages=/tmp/vsr-site
if compgen -G ".whl/*.whl" > /dev/null; then
  step "install carried wheels" 60 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site_packages" .whl/*.whl
  export PYTHONPATH="$site_packages${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} >> "$log" 2>&1
# GPU tests: CUDA vs CPU, the engine contract on every CUDA backend (torch fp32/bf16/fp16, compiled with
# CUDA graphs, ORT CUDA and TensorRT where installed), bf16/fp16 parity with CPU fp32.
step "gpu tests" 180 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_engines_contract.py
# Engine benchmark (torch fp32 eager vs bf16 compiled, ORT/TensorRT where present); JSON after each size.
step "engines bench" 150 "$py" -m bench.engines --device cuda --frames 8 --repeats 10 --threads 16 \
  --out "$out/gpu_engines.json"
for dtype in float32 bfloat16; do
  step "fastvsr vs baseline $dtype" 45 "$py" -m bench.fastvsr_vs_baseline --device cuda --dtype "$dtype" \
    --frames 33 --repeats 5 --threads 16 --out "$out/fastvsr_vs_baseline_$dtype.json"
done
# Full-scale architecture (CogVideoX1.5-5B VAE + DiT, random weights), 33 frames 180p -> 720p, bf16:
# FastVSR vs the DOVE-style baseline (issue 10).
step "fullscale bench" 120 "$py" -m bench.fullscale --device cuda --dtype bfloat16 --frames 33 --repeats 2 \
  --out "$out/fullscale.json"
grep "^=== .* rc=" "$log"
