# The web chat with the embedding model and the index of corpus/ baked in.
#
#   docker build -t rag .
#   docker run --rm -p 7860:7860 rag            # http://localhost:7860
#
# Build arguments:
#   BASE             the Python 3.11 base image (a local one works: tests and air-gapped builds)
#   TORCH_INDEX_URL  where pip finds the CPU build of torch==2.13.0; PyPI's torch wheel pulls in
#                    several GB of CUDA libraries. Set it to "" to take torch from PyPI or a mirror.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False
WORKDIR /app
# The same script tests/test_deploy.py runs outside Docker.
COPY deploy/image.sh deploy/image.sh
COPY pyproject.toml README.md ./
COPY rag rag
RUN sh deploy/image.sh install /opt/venv /app
COPY corpus corpus
RUN sh deploy/image.sh index /opt/venv /app/corpus /app/.rag

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAG_HOST=0.0.0.0 \
    RAG_PORT=7860 \
    RAG_CORPUS_DIR=/app/corpus \
    RAG_DATA_DIR=/app/.rag \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    ANONYMIZED_TELEMETRY=False
# /data and /chroma: mount points for compose.yaml's volumes, writable by the app user.
# The group gets gid 10001 too: USER 10001:10001 names it (useradd --user-group picks a system gid).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
    && mkdir -p /data /chroma && chown app:app /data /chroma
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=app:app /app/corpus corpus
COPY --from=build --chown=app:app /app/.rag .rag
COPY app.py deploy/healthcheck.py ./
USER 10001:10001
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 CMD ["python", "/app/healthcheck.py"]
CMD ["python", "app.py"]
