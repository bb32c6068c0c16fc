# driftrec services (worker, embedder, serve) for docker compose.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    DRIFTREC_DATA_DIR=/var/lib/driftrec
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY models ./models
COPY features ./features
COPY producers ./producers
COPY online_update ./online_update
COPY stream ./stream
COPY ops ./ops
RUN pip install --no-cache-dir .
RUN useradd --create-home driftrec && mkdir -p /var/lib/driftrec && chown driftrec /var/lib/driftrec
USER driftrec
ENTRYPOINT ["driftrec"]
CMD ["--help"]
