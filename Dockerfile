# syntax=docker/dockerfile:1
# User-code image of the oil_analysis code location. The same image runs the webserver and the daemon
# in docker-compose (other commands), so every Dagster process has the same versions, from uv.lock.
#   docker build -t oil-analysis:$(git rev-parse --short HEAD) .

FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/dagster/venv
WORKDIR /opt/dagster/app
# Dependencies first (a layer that changes only with the lock file), then the package itself.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY oil_analysis ./oil_analysis
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster/dagster_home --no-create-home dagster
COPY --from=build /opt/dagster/venv /opt/dagster/venv
ENV PATH=/opt/dagster/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    OIL_ENV=prod
COPY deploy/dagster.prod.yaml /opt/dagster/dagster_home/dagster.yaml
COPY deploy/workspace.prod.yaml /opt/dagster/app/workspace.yaml
# DAGSTER_HOME is written at runtime (compute-log staging, daemon heartbeats): owned by the runtime user.
RUN mkdir -p /opt/dagster/app && chown -R dagster:dagster /opt/dagster/dagster_home /opt/dagster/app
WORKDIR /opt/dagster/app
USER 10001:10001
EXPOSE 4000
# CMD, not ENTRYPOINT: Kubernetes run pods (K8sRunLauncher) replace the arguments with
# `dagster api execute_run …`, and docker-compose gives the webserver and the daemon their own.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "oil_analysis.definitions"]
