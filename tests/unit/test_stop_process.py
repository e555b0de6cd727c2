"""The demo and the benchmark stop their controller with SIGTERM, and kill it if it hangs."""

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from sandbox.controlplane import stop_process

HANDLERS = {
    "exits": "signal.SIG_DFL",
    "ignores": "signal.SIG_IGN",
}


@pytest.mark.parametrize(("on_term", "code"), [("exits", -signal.SIGTERM), ("ignores", -signal.SIGKILL)])
async def test_sigterm_then_sigkill_after_the_grace(on_term: str, code: int) -> None:
    script = (
        f"import signal, time; signal.signal(signal.SIGTERM, {HANDLERS[on_term]}); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    started = time.monotonic()
    await stop_process(proc, grace=0.5)
    assert proc.returncode == code
    assert time.monotonic() - started < 5


async def test_a_process_that_already_ended_is_left_alone() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    await stop_process(proc, grace=0.5)
    assert proc.returncode == 0
