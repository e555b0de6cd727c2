# syntax=docker/dockerfile:1
# Build stage: a venv with the controller and its dependencies, built with pip's tools.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install .

# Final stage: the slim runtime, the venv, a numeric non-root user; no compilers, no pip cache.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["mediajob-controller"]
