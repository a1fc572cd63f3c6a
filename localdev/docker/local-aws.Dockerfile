# syntax=docker/dockerfile:1
# The local AWS endpoint of docker-compose.yaml: moto + the project's companion (Firehose, and Managed Flink
# running the application in PyFlink on Java 17), i.e. what `make up` starts with `python -m localdev.aws up`.
# Its Python packages are exactly those of the committed uv.lock: the project's runtime dependencies plus the
# `local` group (PyFlink, moto, jq, ...), never the Airflow, dev or bench groups.
# Build context: the repository root (see .dockerignore).
FROM python:3.11-slim-bookworm

# PyFlink starts a JVM for every job; procps gives `ps` to anyone debugging inside the container.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

# The uv release the Makefile pins (UV_VERSION), so the lock is read the way `make sync` reads it.
RUN pip install --no-cache-dir uv==0.13.9

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
WORKDIR /opt/clickstream

# Dependencies first, from the lock alone (this layer changes only when pyproject.toml or uv.lock do).
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-default-groups --group local --no-install-project

# Then the code the endpoint runs: localdev/ (endpoint, Flink runner) and include/ (the Flink application and
# the sessions contract it executes). The project is installed editable, as `make sync` does.
COPY README.md ./
COPY include/ include/
COPY localdev/ localdev/
RUN uv sync --frozen --no-default-groups --group local

# The command `python -m localdev.aws up` runs, as one container's processes: moto on the container's loopback,
# the companion (PID 1's child under `init: true`, so SIGTERM reaches it: it flushes Firehose and stops the
# Flink jobs) on every interface of the container, so that the Airflow containers reach it. moto starts
# empty, so the companion's state from an earlier start of this container goes first, as `up` does.
EXPOSE 4566
CMD ["sh", "-c", "rm -rf /var/lib/local-aws/services; python -m localdev.aws.moto_server -H 127.0.0.1 -p 4567 & exec python -m localdev.aws.gateway --host 0.0.0.0 --port 4566 --moto-port 4567 --state-dir /var/lib/local-aws"]
