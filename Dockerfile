# Minimal CPU image: `vsr upscale`, `vsr serve` (API) and `vsr worker`.
# The multi-stage api / worker-cpu / worker-gpu images come with the deployment issue.
FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 10001 vsr
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models models
COPY worker worker
COPY service service
COPY vsr vsr
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu '.[model]'
USER vsr
ENTRYPOINT ["vsr"]
CMD ["--help"]
