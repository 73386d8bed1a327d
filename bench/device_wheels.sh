#!/usr/bin/env bash
# Fetch, into .whl/, the wheels that bench/gpu_check.sh imports and the lent GPU machine's image lacks
# (it has torch, numpy, onnx, onnxruntime, opencv, pytest, transformers, accelerate, huggingface-hub and
# safetensors, but no package registry). Versions are the ones this checkout's .venv runs, for the
# device's CPython 3.12 on x86-64. Run here, from the repository root, after `make test` built .venv:
#   bash bench/device_wheels.sh      # then carry ".whl" with the device call
set -euo pipefail
py=".venv/bin/python"
packages=(
  redis boto3 botocore s3transfer jmespath  # tests/conftest.py's service fixtures import them
  pydantic pydantic_core annotated-types typing-inspection  # engines.settings
  diffusers importlib_metadata zipp  # bench.fullscale (CogVideoX modules)
)
pins=()
for name in "${packages[@]}"; do
  pins+=("$name==$("$py" -c 'import importlib.metadata, sys; print(importlib.metadata.version(sys.argv[1]))' "$name")")
done
rm -rf .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${pins[@]}"
du -sh .whl
