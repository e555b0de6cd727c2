"""`python -m controller` / `mediajob-controller`: settings, logging, then kopf until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import kopf
from kopf._core.engines.activities import ActivityError  # not re-exported by kopf

from controller import logs
from controller.operator import Memo, build_registry
from controller.runtime import Runtime
from controller.settings import Settings, SettingsError

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger("controller")


def load_settings() -> Settings:
    in_cluster = SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else None
    return Settings.from_env(os.environ, in_cluster_namespace=in_cluster)


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    runtime = Runtime(settings, stop=stop)
    namespaces = [settings.watch_namespace] if settings.watch_namespace else []
    await kopf.operator(
        registry=build_registry(),
        memo=Memo(runtime=runtime),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        stop_flag=stop,
    )
    return runtime.exit_code


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"mediajob-controller: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(fmt=settings.log_format, secrets=settings.secrets, level=settings.log_level.upper())
    try:
        code = asyncio.run(run(settings))
    except kopf.LoginError as exc:
        log.error("cannot log in to Kubernetes: %s", exc)
        code = 3
    except ActivityError as exc:  # a start-up handler failed permanently; kopf has logged why
        log.error("start-up failed: %s", exc.__cause__ or exc)
        code = 4
    sys.exit(code)


if __name__ == "__main__":
    main()
