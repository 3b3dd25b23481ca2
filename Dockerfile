# PHI egress gateway. Build: docker build -t phi-gateway .
# Run: docker run -p 8080:8080 -p 9464:9464 -v phi-var:/app/var phi-gateway

# Stage 1: the hot-path modules compiled with mypyc (gateway/native.py, docs/native.md). The
# compiler and the dev tools stay in this stage; only the compiled modules move on.
FROM python:3.12-slim AS native
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements-dev.lock ./
RUN pip install --require-hashes -r requirements-dev.lock
COPY pyproject.toml ./
COPY gateway ./gateway
COPY scripts/build_native.py ./scripts/
RUN python scripts/build_native.py && python -c "from gateway import native; assert native.STATE.in_use, native.STATE.describe()"

# Stage 2: the gateway.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# tesseract-ocr: OCR of scans and images when ocr.enabled (off by default: configs/gateway.yaml).
# haproxy: the balancer `phi-gateway run --workers N` starts in front of its workers.
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
    haproxy && rm -rf /var/lib/apt/lists/*
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY --from=native /app/gateway ./gateway
COPY addons ./addons
COPY geo_db ./geo_db
COPY configs ./configs
# The check runs where the image runs the gateway from: site-packages, not /app.
RUN pip install --no-deps . \
    && cd / && python -c "from gateway import native; assert native.STATE.in_use, native.STATE.describe()" \
    && useradd --system --uid 10001 --home-dir /app gateway \
    && mkdir -p /app/var && chown gateway /app/var

USER gateway
VOLUME ["/app/var"]
EXPOSE 8080 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status != 200)"

# Listen on all interfaces inside the container; public clients stay refused unless
# proxy.allow_public_clients is set. The CA is created in /app/var/mitmproxy.
CMD ["phi-gateway", "run", "--config", "configs/gateway.yaml", \
     "--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:9464"]
