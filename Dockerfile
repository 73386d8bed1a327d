# syntax=docker/dockerfile:1
# FastVSR service images, one file, three targets (see deploy/README.md):
#   docker build --target api        -t fastvsr-api:0.1.0 .         API only: base deps, no torch
#   docker build --target worker-cpu -t fastvsr-worker-cpu:0.1.0 .  ONNX Runtime + torch CPU
#   docker build --target worker-gpu -t fastvsr-worker-gpu:0.1.0 .  CUDA runtime + torch CUDA + TensorRT
#
# Base images are pinned to exact version tags. Their digests could not be verified where this file was
# written (no Docker engine, no registry access), so none is written here: resolve them on a machine that
# can pull (`docker buildx imagetools inspect python:3.11.13-slim-bookworm`) and pin `tag@sha256:...`.
# Every `vsr` subcommand stays available in every image (`docker run IMAGE vsr --help`).

########################################################################################################
# Shared: CPython 3.11 on Debian, a virtual environment at /opt/venv, the project's sources.
FROM python:3.11.13-slim-bookworm AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

FROM python-base AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models models
COPY engines engines
COPY worker worker
COPY service service
COPY vsr vsr

########################################################################################################
# api: `pip install .` (base dependencies only: FastAPI, Redis, RQ, boto3, Prometheus client; no torch).
FROM source AS api-build
RUN pip install --no-cache-dir /src

FROM python:3.11.13-slim-bookworm AS api
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/vsr \
    VSR_DATA_DIR=/var/lib/vsr \
    VSR_TENANTS_FILE=/etc/vsr/tenants/tenants.json
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/vsr --create-home --shell /usr/sbin/nologin vsr
COPY --from=api-build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/vsr
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# The API alone, through the uvicorn factory. (`vsr serve` would run torch-free here too with VSR_REDIS_URL
# set: it imports the worker, and so torch, only in embedded mode.)
CMD ["uvicorn", "service.api.app:app_from_env", "--factory", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]

########################################################################################################
# worker-cpu: torch (CPU build, from the PyTorch CPU index) + the `model` extra (ONNX Runtime, PyAV, ...);
# it serves with torch on tcmalloc (bench/results/cpu_engines.json: faster than ONNX Runtime here).
FROM source AS worker-cpu-build
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir '/src[model]'

FROM python:3.11.13-slim-bookworm AS worker-cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/vsr \
    VSR_DATA_DIR=/var/lib/vsr \
    VSR_TENANTS_FILE=/etc/vsr/tenants/tenants.json \
    VSR_DEVICE=cpu \
    VSR_ENGINE__BACKEND=torch \
    VSR_WORKER_METRICS_PORT=9101 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1
# tcmalloc as the process's malloc: it reuses freed activations instead of page-faulting fresh ones each
# chunk (README, "CPU memory allocation"); a fixed path for LD_PRELOAD on any architecture
RUN apt-get update \
    && apt-get install -y --no-install-recommends libtcmalloc-minimal4=2.10-1 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "/usr/lib/$(uname -m)-linux-gnu/libtcmalloc_minimal.so.4" /usr/local/lib/libtcmalloc_minimal.so.4 \
    && test -e /usr/local/lib/libtcmalloc_minimal.so.4 \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/vsr --create-home --shell /usr/sbin/nologin vsr
ENV LD_PRELOAD=/usr/local/lib/libtcmalloc_minimal.so.4
COPY --from=worker-cpu-build /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/vsr-drain.sh /usr/local/bin/vsr-drain
USER 10001:10001
WORKDIR /var/lib/vsr
EXPOSE 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('VSR_WORKER_METRICS_PORT', '9101'), timeout=4)"]
# SIGTERM re-queues the running job at its next chunk (VSR_SHUTDOWN=requeue); give it time to.
STOPSIGNAL SIGTERM
CMD ["vsr", "worker"]

########################################################################################################
# worker-gpu: NVIDIA CUDA runtime base, CPython 3.11 (python-build-standalone, installed by uv: Ubuntu
# 24.04 ships 3.12 only), torch CUDA build, TensorRT from NVIDIA's index. At start the entrypoint builds
# the TensorRT engines into the engine cache (a volume) on a miss, or loads them, then runs `vsr worker`.
FROM ghcr.io/astral-sh/uv:0.9.8 AS uv

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04 AS worker-gpu-build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN uv python install 3.11.13 \
    && "$(uv python find 3.11.13)" -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu130 torch==2.13.0 \
    && pip install --no-cache-dir --extra-index-url https://pypi.nvidia.com tensorrt-cu13==11.4.0.106
WORKDIR /src
COPY --from=source /src /src
RUN pip install --no-cache-dir '/src[model,fullscale]'

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04 AS worker-gpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/vsr \
    VSR_DATA_DIR=/var/lib/vsr \
    VSR_TENANTS_FILE=/etc/vsr/tenants/tenants.json \
    VSR_DEVICE=cuda \
    VSR_ENGINE__BACKEND=tensorrt \
    VSR_ENGINE__PRECISION=fp16 \
    VSR_ENGINE__CACHE_DIR=/var/cache/fastvsr/engines \
    VSR_WORKER_METRICS_PORT=9101 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/vsr --create-home --shell /usr/sbin/nologin vsr \
    && mkdir -p /var/cache/fastvsr/engines \
    && chown -R 10001:10001 /var/cache/fastvsr
COPY --from=worker-gpu-build /opt/python /opt/python
COPY --from=worker-gpu-build /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/worker-gpu-entrypoint.sh /usr/local/bin/vsr-gpu-entrypoint
COPY --chmod=0755 deploy/docker/vsr-drain.sh /usr/local/bin/vsr-drain
USER 10001:10001
WORKDIR /var/lib/vsr
# The engine cache: mount a volume here (compose: a named volume; Kubernetes: a PersistentVolumeClaim).
VOLUME ["/var/cache/fastvsr/engines"]
EXPOSE 9101
# A cold engine cache means a TensorRT build before the metrics port opens: a long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('VSR_WORKER_METRICS_PORT', '9101'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["vsr-gpu-entrypoint"]
CMD ["vsr", "worker"]
