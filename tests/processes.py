"""Controllers as real processes (`python -m controller`), for leader election and signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sandbox.controlplane import free_port


class ControllerProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path, argv: list[str] | None = None) -> None:
        self.name = name
        self.argv = argv or [sys.executable, "-m", "controller"]
        self.port = free_port()  # the webhooks
        self.metrics_port = free_port()  # metrics and probes
        self.env = {
            **os.environ,
            **env,
            "POD_NAME": name,
            "HTTP_PORT": str(self.port),
            "METRICS_PORT": str(self.metrics_port),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ControllerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout} s")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def get(self, path: str, timeout: float = 2.0) -> httpx.Response | None:
        """GET /metrics, /healthz or /readyz (on the metrics port)."""
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                return await client.get(f"http://127.0.0.1:{self.metrics_port}{path}")
        except httpx.HTTPError:
            return None

    async def metric(self, name: str) -> float | None:
        """One sample from /metrics (the line starting with `name`), or None."""
        response = await self.get("/metrics")
        if response is None or response.status_code != 200:
            return None
        for line in response.text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def controllers(*procs: ControllerProcess) -> object:
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.stop()
