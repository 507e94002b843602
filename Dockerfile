# syntax=docker/dockerfile:1
# Stages: base (runtime venv, built by the same make target as `make serve`),
# prod (serves synthetic mode on 0.0.0.0:8000), dev (adds test tooling; runs `make test`).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY Makefile requirements.txt ./
RUN make .venv/.runtime
COPY cli.py setup.cfg ./
COPY dummy_vllm ./dummy_vllm
RUN mkdir -p recordings

FROM base AS prod
RUN useradd --create-home --uid 10001 dummy && chown -R dummy /app/recordings
USER dummy
ENV DUMMY_VLLM_HOST=0.0.0.0 \
    DUMMY_VLLM_PORT=8000
EXPOSE 8000
VOLUME ["/app/recordings"]
HEALTHCHECK --interval=10s --timeout=2s \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"]
# The command `make serve` runs, without make as PID 1 so that signals reach the server.
ENTRYPOINT ["/app/.venv/bin/python", "cli.py"]
CMD ["serve"]

FROM base AS dev
COPY requirements-dev.txt ./
RUN make .venv/.dev
COPY . .
CMD ["make", "test"]
