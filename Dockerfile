# syntax=docker/dockerfile:1
# One image for every role: `imgproc api` (default), worker, worker-probe, migrate, flower,
# operator, smoke. Built by skaffold.yaml for kind, by scripts/images (buildah, on a local
# Debian base: --build-arg PYTHON_IMAGE=...) for the local cluster; checked by tests/charts.
#   docker build -t imgproc:dev .
#   docker run --rm -p 8000:8000 imgproc:dev run            (API + worker, embedded SQLite mode)
#   docker run --rm imgproc:dev worker                      (any other subcommand)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compilers live here only -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
# A virtualenv in both stages: the same paths on the official image (/usr/local/bin/python3)
# and on a Debian base (/usr/bin/python3, whose system site is closed to pip by PEP 668).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# For dependencies without a wheel for this platform (all current ones have one).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from the lock files alone (`make lock` writes them from pyproject.toml):
# exact versions, and pip refuses any file whose sha256 is not in the lock.
COPY requirements.lock requirements-build.lock ./
RUN pip wheel --require-hashes --wheel-dir /wheels -r requirements.lock \
 && pip install --require-hashes -r requirements-build.lock \
 && cp requirements.lock /wheels/
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY operator ./operator
# The build backend is the locked setuptools installed above, not one fetched unhashed.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# --- runtime: no compilers, no build files, non-root ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# tini as PID 1: forwards SIGTERM to uvicorn/Celery (their warm shutdown) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 imgproc \
 && useradd --system --uid 10001 --gid imgproc --home-dir /home/imgproc --create-home \
      --shell /usr/sbin/nologin imgproc
# Install from the builder's wheels through a bind mount: the wheels never become a layer.
# The dependencies are checked against the lock's hashes once more; imgproc itself is the
# wheel just built; `pip check` proves the set complete and consistent.
RUN python3 -m venv /opt/venv
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --require-hashes -r /wheels/requirements.lock \
 && pip install --no-index --find-links=/wheels --no-deps "imgproc[operator]" \
 && pip check
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
