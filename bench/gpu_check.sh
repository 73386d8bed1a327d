#!/usr/bin/env bash
# Every GPU check and benchmark in one call, for a lent device (see README, "GPU checks").
# Writes results under $OUT (or bench/results/gpu when OUT is unset). Run from the repository root:
#   bash bench/gpu_check.sh
set -uo pipefail
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$out/environment.txt" 2>&1
# GPU tests: CUDA vs CPU, the engine contract on every CUDA backend (torch fp32/bf16/fp16, compiled with
# CUDA graphs, ORT CUDA and TensorRT where installed), bf16/fp16 parity with CPU fp32. Budget: 3.5 min.
timeout 210 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_engines_contract.py \
  > "$out/gpu_tests.txt" 2>&1
echo "gpu tests rc=$?" >> "$out/gpu_tests.txt"
# Engine benchmark (torch fp32 eager vs bf16 compiled, ORT/TensorRT where present); JSON after each size.
timeout 170 "$py" -m bench.engines --device cuda --frames 8 --repeats 10 --threads 16 \
  --out "$out/gpu_engines.json" > "$out/gpu_engines.txt" 2>&1
echo "engines bench rc=$?" >> "$out/gpu_engines.txt"
for dtype in float32 bfloat16; do
  "$py" -m bench.fastvsr_vs_baseline --device cuda --dtype "$dtype" --frames 33 --repeats 5 --threads 16 \
    --out "$out/fastvsr_vs_baseline_$dtype.json" > "$out/fastvsr_vs_baseline_$dtype.txt" 2>&1
done
# Full-scale architecture (CogVideoX1.5-5B VAE + DiT, random weights), 33 frames 180p -> 720p, bf16:
# FastVSR vs the DOVE-style baseline (issue 10). Needs diffusers: carry its wheels in $WHEELS if absent.
"$py" -c "import diffusers" 2>/dev/null || "$py" -m pip install -q --no-index --find-links "${WHEELS:-wheels}" \
  diffusers accelerate transformers > "$out/fullscale_install.txt" 2>&1
timeout 150 "$py" -m bench.fullscale --device cuda --dtype bfloat16 --frames 33 --repeats 2 \
  --out "$out/fullscale.json" > "$out/fullscale.txt" 2>&1
echo "fullscale bench rc=$?" >> "$out/fullscale.txt"
tail -n 3 "$out"/*.txt
