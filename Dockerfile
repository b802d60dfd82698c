# syntax=docker/dockerfile:1
# One image for every role: `imgproc api` (default), worker, worker-probe, migrate, flower,
# operator, smoke. Built by skaffold.yaml for kind; checked statically by tests/charts.
#   docker build -t imgproc:dev .
#   docker run --rm -p 8000:8000 imgproc:dev run            (API + worker, embedded SQLite mode)
#   docker run --rm imgproc:dev worker                      (any other subcommand)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compilers live here only -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# For dependencies without a wheel for this platform (all current ones have one).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first: this layer stays cached while only the application code changes.
COPY pyproject.toml ./
RUN python - <<'PY' > requirements.txt
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["operator"]))
PY
RUN pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY app ./app
COPY worker ./worker
COPY operator ./operator
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: no compilers, no build files, non-root ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# tini as PID 1: forwards SIGTERM to uvicorn/Celery (their warm shutdown) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 imgproc \
 && useradd --system --uid 10001 --gid imgproc --home-dir /home/imgproc --create-home \
      --shell /usr/sbin/nologin imgproc
# Install from the builder's wheels through a bind mount: the wheels never become a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "imgproc[operator]"
# /data: shared storage mount point (IMGPROC_STORAGE_DIR); writable by the app user when no
# volume is mounted (docker run).
RUN install -d -o 10001 -g 10001 /data
WORKDIR /home/imgproc
# Listen on all interfaces inside the container; keep local state in the home directory when
# the root filesystem is writable (Kubernetes sets IMGPROC_DATA_DIR=/tmp/imgproc).
ENV IMGPROC_HOST=0.0.0.0 \
    IMGPROC_PORT=8000 \
    IMGPROC_DATA_DIR=/home/imgproc/data \
    IMGPROC_STORAGE_DIR=/data
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["tini", "--", "imgproc"]
CMD ["api"]
