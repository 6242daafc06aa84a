# crashd: one image for the web server and the workers (docs/deploy.md).
#
#   docker build -t crashd .
#   docker run -p 8000:8000 -v crashd-data:/data crashd                     # web, SQLite, in-process worker
#   docker run -e CRASHD_REDIS_URL=... -e CRASHD_DATABASE_URL=... -v crashd-data:/data crashd crashd worker
#
# All configuration is CRASHD_* environment variables (schemas/settings.py).

ARG PYTHON_IMAGE=python:3.11-slim

# -- build: install crashd and its dependencies into a virtualenv ---------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/crashd
WORKDIR /src
COPY . .
RUN /opt/crashd/bin/pip install .
# Prove the Alembic migrations (package data of `storage`) made it into the install: run them
# on a throwaway SQLite database from outside /src, so the source tree cannot stand in for it.
WORKDIR /
RUN CRASHD_DATA_DIR=/tmp/migrate-check /opt/crashd/bin/crashd migrate \
    && rm -rf /tmp/migrate-check

# -- runtime: the virtualenv, a non-root user and the data volume --------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/crashd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRASHD_DATA_DIR=/data
# A fixed uid/gid so a bind-mounted data folder can be chowned to it: chown -R 10001:10001 DIR
RUN groupadd --system --gid 10001 crashd \
    && useradd --system --uid 10001 --gid crashd --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin crashd \
    && mkdir /data && chown crashd:crashd /data
COPY --from=build /opt/crashd /opt/crashd
# Numeric, so runtimes can verify non-root (Kubernetes runAsNonRoot) without /etc/passwd.
USER 10001:10001
WORKDIR /data
# The SQLite database (when CRASHD_DATABASE_URL is unset), the blob store (/data/blobs) and
# upload spool files (/data/tmp). Web and workers must mount the same volume.
VOLUME ["/data"]
EXPOSE 8000
# /__lbheartbeat__ only says the process answers; /__heartbeat__ also checks database, blob
# store and queue. Assumes the default port 8000. The worker has no HTTP server: compose
# disables this check for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/__lbheartbeat__', timeout=4)"]
CMD ["crashd", "serve", "--host", "0.0.0.0", "--port", "8000"]
