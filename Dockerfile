# syntax=docker/dockerfile:1
# The official slim Python image by default. Where no registry can be reached, `make image` builds an
# equivalent base from Debian packages (hack/base-image.sh) and passes it here.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Build stage: a venv with the pinned, hash-checked dependencies, then the controller without deps.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY controller ./controller
RUN /opt/venv/bin/pip install --no-deps .

# The e2e sandbox (`make image-sandbox`): the loopback simulators, never part of the controller image.
FROM ${BASE_IMAGE} AS sandbox
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/app
COPY --from=build /opt/venv /opt/venv
COPY sandbox /app/sandbox
USER 65532:65532
ENTRYPOINT ["python", "-m", "sandbox.serve"]

# Final stage: the runtime, the venv, a numeric non-root user; no compilers, no pip cache.
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["mediajob-controller"]
