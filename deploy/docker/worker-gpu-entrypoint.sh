#!/bin/sh
# worker-gpu entrypoint: make sure the TensorRT engines of the default model are in the engine cache for
# this GPU and TensorRT release, then run the command (default: `vsr worker`).
#
# `vsr export trt` looks each plan up in VSR_ENGINE__CACHE_DIR (the key holds the ONNX digest, the
# TensorRT version, the GPU's compute capability, the engine profile VSR_ENGINE__FRAMES/HEIGHT/WIDTH and
# the precision), builds only on a miss, then loads every plan to prove it deserializes here. Pods that
# share one cache volume (ReadWriteMany) take a lock on it: one builds, the others wait, then load.
# VSR_ENGINE_PREBUILD=0 skips this step (the worker then builds a missing plan itself, without the lock).
set -eu

prebuild_engines() {
    cache="${VSR_ENGINE__CACHE_DIR:?VSR_ENGINE__CACHE_DIR must name the engine-cache volume}"
    precision="${VSR_ENGINE__PRECISION:-fp16}"
    case "$precision" in
        fp16 | fp32) ;;
        *)
            echo "vsr-gpu-entrypoint: VSR_ENGINE__PRECISION must be fp16 or fp32 for TensorRT, not $precision" >&2
            return 2
            ;;
    esac
    # The worker loads its default model (the first of VSR_MODELS, from VSR_MODEL_DIR if set) at start.
    model="$(python -c 'from service.settings import load_settings; print(load_settings().default_model)')"
    set -- --config "$model"
    if [ -n "${VSR_MODEL_DIR:-}" ]; then
        set -- "$@" --model "$VSR_MODEL_DIR"
    fi
    mkdir -p "$cache"
    echo "vsr-gpu-entrypoint: TensorRT engines for $model ($precision) in $cache" >&2
    flock --timeout "${VSR_ENGINE_BUILD_WAIT_S:-1800}" "$cache/.build.lock" \
        vsr export trt --precision "$precision" --device "${VSR_DEVICE:-cuda}" "$@"
}

if [ "${VSR_ENGINE_PREBUILD:-1}" = 1 ] && [ "${VSR_ENGINE__BACKEND:-auto}" = tensorrt ]; then
    prebuild_engines
fi

exec "$@"
