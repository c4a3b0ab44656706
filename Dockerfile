# One image for every tokenrelay process: `gateway` (default), `worker`, `mock-model`, `admin`.
#   docker build -t tokenrelay .
#   docker run -p 8000:8000 -e TOKENRELAY_REDIS_URL=redis://... -e TOKENRELAY_SIGNING_KEY=... tokenrelay
#   docker run -e TOKENRELAY_REDIS_URL=redis://... tokenrelay worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir shared producer gateway tokenrelay \
    && touch shared/__init__.py producer/__init__.py gateway/__init__.py tokenrelay/__init__.py \
    && pip install . \
    && pip uninstall --yes tokenrelay \
    && rm -rf shared producer gateway tokenrelay build *.egg-info
COPY shared shared
COPY producer producer
COPY gateway gateway
COPY tokenrelay tokenrelay
# the browser library, the demo page and the admin pages (gateway/pages.py serves /app/web)
COPY web web
RUN pip install --no-deps --editable . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin tokenrelay

USER 10001
# 8000: the gateway's HTTP API and /metrics; 9100: a worker's /metrics (TOKENRELAY_WORKER_METRICS_PORT)
EXPOSE 8000 9100
ENTRYPOINT ["tokenrelay"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
