# The service image. `docker compose up` runs it beside PostgreSQL (docker-compose.yml).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app pos

# The wheel carries sql/ and openapi.yaml inside the package (see pyproject.toml).
COPY pyproject.toml README.md openapi.yaml ./
COPY sql ./sql
COPY service ./service
RUN pip install . && rm -rf /app/service /app/sql

USER pos
ENV ENVIRONMENT=production \
    SEED_DEMO=false \
    HOST=0.0.0.0 \
    PORT=8080 \
    LOG_FORMAT=json
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"

# SIGTERM (docker stop) drains in-flight requests for up to SHUTDOWN_TIMEOUT_SECONDS.
STOPSIGNAL SIGTERM
CMD ["pos", "serve"]
