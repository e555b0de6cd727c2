"""`python -m controller` / `mediajob-controller`: settings, logging, then kopf until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, cast

import kopf

from controller import logs
from controller.operator import Memo, build_registry
from controller.runtime import Runtime
from controller.settings import Settings, SettingsError

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger("controller")


def operator_identity(pod_name: str | None, hostname: str) -> str:
    """kopf's own fallback asks the passwd database for the user name, which an arbitrary UID
    (restricted Pod Security, OpenShift) does not have: name the replica after its pod instead."""
    return pod_name or hostname or "mediajob-controller"


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    runtime = Runtime(settings, stop=stop)
    namespaces = [settings.watch_namespace] if settings.watch_namespace else []
    identity = operator_identity(os.environ.get("POD_NAME"), socket.gethostname())
    try:
        await kopf.operator(
            registry=build_registry(),
            memo=Memo(runtime=runtime),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop,
            identity=cast(Any, identity),  # kopf's Identity is a NewType of str it does not export
        )
    except Exception:
        if runtime.startup_failure is None:
            raise
        # a start-up handler failed permanently; kopf has logged the details
        log.error("start-up failed: %s", runtime.startup_failure)
        return 4
    return runtime.exit_code


def main() -> None:
    try:
        in_cluster = SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else None
        settings = Settings.from_env(os.environ, in_cluster_namespace=in_cluster)
    except SettingsError as exc:
        print(f"mediajob-controller: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(fmt=settings.log_format, secrets=settings.secrets, level=settings.log_level.upper())
    try:
        code = asyncio.run(run(settings))
    except kopf.LoginError as exc:
        log.error("cannot log in to Kubernetes: %s", exc)
        code = 3
    sys.exit(code)


if __name__ == "__main__":
    main()
