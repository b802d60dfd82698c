# syntax=docker/dockerfile:1
# One image for every role: `imgproc api` (default), worker, worker-probe, migrate, flower,
# operator, smoke. Built by skaffold.yaml for kind, by scripts/images (buildah, on a local
# Debian base: --build-arg PYTHON_IMAGE=...) for the local cluster; checked by tests/unit/charts.
#   docker build -t imgproc:dev .
#   docker run --rm -p 8000:8000 imgproc:dev run            (API + worker, embedded SQLite mode)
#   docker run --rm imgproc:dev worker                      (any other subcommand)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compilers live here only -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
# The image's virtualenv is made here and copied whole into the runtime stage: one path,
# /opt/venv, on the official image (/usr/local/bin/python3) and on a Debian base
# (/usr/bin/python3, whose system site is closed to pip by PEP 668); both stages start from
# the same ${PYTHON_IMAGE}, so its interpreter is where the venv expects it.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# For dependencies without a wheel for this platform (all current ones have one).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
# /opt/build only holds the build backend, so it stays out of the image's venv.
RUN python3 -m venv /opt/venv \
 && python3 -m venv /opt/build
WORKDIR /src
# Dependencies first, from the lock files alone (`make lock` writes them from pyproject.toml):
# exact versions, and pip refuses any file whose sha256 is not in the lock.
COPY requirements.lock requirements-build.lock ./
RUN pip install --require-hashes -r requirements.lock \
 && /opt/build/bin/pip install --require-hashes -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY operator ./operator
# The wheel is built by the locked setuptools (not one fetched unhashed) and installed without
# dependencies, which are all in already: `pip check` proves them complete for the extra.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && pip install --no-index --find-links=/dist --no-deps "imgproc[operator]" \
 && pip check

# --- runtime: no compilers, no build files, non-root ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# tini as PID 1: forwards SIGTERM to uvicorn/Celery (their warm shutdown) and reaps zombies.
# libgs-common: ghostscript's ICC profiles (150 KB, no dependencies); its SWOP CMYK profile converts
# CMYK uploads that embed none (app.imaging.colour.STANDARD_CMYK_PROFILE_PATH).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini libgs-common \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 imgproc \
 && useradd --system --uid 10001 --gid imgproc --home-dir /home/imgproc --create-home \
      --shell /usr/sbin/nologin imgproc
# The builder's virtualenv: the locked dependencies and imgproc, without compilers, sources
# or wheel files. (A copy, not a `RUN --mount=from=builder` install: buildah 1.28's layer cache
# reuses such a RUN after the builder stage has changed, and installs a stale wheel.)
COPY --from=builder /opt/venv /opt/venv
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
