#!/usr/bin/env python3
"""runc for kind's node containers on a host whose capability bounding set is short of one.

kind starts each node with `docker run --privileged`. Docker 20.10 (Debian's) then asks runc for
every capability the kernel knows, and on a host whose bounding set lacks one (root here has no
CAP_SYS_RESOURCE) runc fails with "unable to apply caps: operation not permitted". containerd
grants a privileged container only the capabilities it holds; this does the same for the
containers it runs: it drops every capability outside this process's bounding set from the
bundle's config.json (`create`, `run`) or the process file (`exec`, as `docker exec --privileged`
makes one), then runs runc. hack/kind/bounded-runtime.sh registers it with dockerd
as the runtime `mediajob-bounded`; kind's `docker run` gets it through hack/kind/bin/docker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RUNC = os.environ.get("MEDIAJOB_RUNC", "/usr/sbin/runc")
CAPS = [  # capability numbers, as in linux/capability.h
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]


def bounding_set(status: str) -> set[str]:
    """The capability names in a /proc/<pid>/status text's CapBnd mask (numbers past the table
    are kept as they are named in no config)."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return {f"CAP_{name}" for bit, name in enumerate(CAPS) if mask >> bit & 1}
    raise ValueError("no CapBnd line in /proc/self/status")


def option(args: list[str], long: str, short: str) -> str | None:
    for i, arg in enumerate(args):
        if arg in (long, short) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def spec_of(args: list[str]) -> tuple[Path, bool] | None:
    """The file that holds the process to start, and whether it is a whole config (its process
    under "process") or a process alone: a `create` or `run` call's bundle config (`--bundle`,
    `-b`, or the working directory, as runc takes it), an `exec` call's `--process` file; None
    for any other command, or an `exec` given its process on the command line."""
    words = set(args)
    if words & {"create", "run"}:
        return Path(option(args, "--bundle", "-b") or Path.cwd()) / "config.json", True
    if "exec" in words:
        process = option(args, "--process", "-p")
        return (Path(process), False) if process else None
    return None


def bounded(process: object, allowed: set[str]) -> bool:
    """Drops from the process's capabilities every one outside `allowed`; True if any was."""
    caps = process.get("capabilities") if isinstance(process, dict) else None
    if not isinstance(caps, dict):
        return False
    changed = False
    for kind, names in caps.items():
        if isinstance(names, list):
            kept = [name for name in names if name in allowed]
            changed |= len(kept) != len(names)
            caps[kind] = kept
    return changed


def main(args: list[str]) -> None:
    found = spec_of(args)
    if found is not None:
        path, whole = found
        spec = json.loads(path.read_text())
        allowed = bounding_set(Path("/proc/self/status").read_text())
        if bounded(spec.get("process") if whole else spec, allowed):
            path.write_text(json.dumps(spec))
    os.execv(RUNC, ["runc", *args])  # noqa: S606 (runc is the point; no shell)


if __name__ == "__main__":
    main(sys.argv[1:])
