"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, like controller-runtime's envtest.

The binaries come from `hack/controlplane/build.sh` (built from Go modules and cached per version
outside the repository). There is no kube-controller-manager, so there is no garbage collection
and no default ServiceAccount; the API server itself serves everything the controller uses.

Used by the test fixtures, the demo and `make dev-cluster`:

    python -m sandbox.controlplane up --state-dir .dev-cluster
    python -m sandbox.controlplane down --state-dir .dev-cluster
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "controlplane" / "build.sh"
_PR_SET_PDEATHSIG = 1


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def build_binaries() -> Path:
    """Build (or reuse) the binaries; returns their directory. The first build takes minutes."""
    override = os.environ.get("MEDIAJOB_CONTROLPLANE_BIN")
    if override:
        return Path(override)
    result = subprocess.run(  # noqa: S603 - our own script
        ["/bin/bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stop_process(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: a controller that hangs is not left behind."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _jwt_shaped(subject: str) -> str:
    """An unsigned token in JWT form that expires in a day: the API server takes it from its token file."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"sub": subject, "iss": "https://oidc.invalid", "exp": int(time.time()) + 86400}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_hex(8)}"


def _die_with_parent() -> None:
    """Children are killed if the process that started them dies, so nothing is left behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ControlPlane:
    def __init__(self, state_dir: Path, *, bin_dir: Path | None = None, detached: bool = False) -> None:
        self.state_dir = state_dir
        self.bin_dir = bin_dir or build_binaries()
        self.detached = detached
        self.kubeconfig = state_dir / "kubeconfig"
        self.token = ""
        self.oidc_token = (
            ""  # JWT-shaped, so that a kubeconfig's OIDC auth-provider accepts it as an id-token
        )
        self.url = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._argv: dict[str, list[str]] = {}

    @property
    def ca_path(self) -> Path:
        """The API server's self-signed chain: its own CA, for 127.0.0.1 and kubernetes.default.svc."""
        return self.state_dir / "certs" / "apiserver.crt"

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def start(self, timeout: float = 90.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.token = secrets.token_hex(16)
        self.url = f"https://127.0.0.1:{api_port}"
        self.oidc_token = _jwt_shaped(subject="oidc-admin")
        (self.state_dir / "tokens.csv").write_text(
            f'{self.token},admin,admin,"system:masters"\n{self.oidc_token},oidc-admin,oidc-admin,"system:masters"\n'
        )
        sa_key = self.state_dir / "sa.key"
        if not sa_key.exists():
            subprocess.run(  # noqa: S603
                ["openssl", "genrsa", "-out", str(sa_key), "2048"],  # noqa: S607
                check=True,
                capture_output=True,
            )
        cert_dir = self.state_dir / "certs"
        cert_dir.mkdir(exist_ok=True)
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={cert_dir}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                f"--service-account-issuer=https://127.0.0.1:{api_port}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--token-auth-file={self.state_dir / 'tokens.csv'}",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
        )
        self._wait_ready(timeout)
        self._write_kubeconfig()
        (self.state_dir / "state.json").write_text(
            json.dumps({"pids": [p.pid for p in self._procs], "url": self.url})
        )

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.state_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own binaries
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=None if self.detached else _die_with_parent,
        )
        self._argv[name] = argv
        self._procs.append(proc)
        return proc

    def restart_apiserver(self, down_s: float = 0.0, grace: float = 1.0, timeout: float = 90.0) -> float:
        """Stop kube-apiserver, wait `down_s`, start it again on the same port and etcd data.

        For chaos tests: clients see their connections cut and refused until it is back. SIGTERM,
        then SIGKILL after `grace` seconds: with open watches its graceful shutdown can take 10 s
        or more. Returns the seconds from the stop until /readyz answered 200 again.
        """
        argv = self._argv["kube-apiserver"]
        old = self._procs[-1]  # etcd first, the API server second (see start)
        stopped = time.monotonic()
        old.terminate()
        try:
            old.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait()
        self._procs.remove(old)
        time.sleep(down_s)
        self._spawn("kube-apiserver", argv)
        self._wait_ready(timeout)
        return time.monotonic() - stopped

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    code = proc.returncode
                    self.stop()
                    raise RuntimeError(
                        f"a control-plane process exited with {code}; see logs in {self.state_dir}"
                    )
            request = urllib.request.Request(  # noqa: S310 - loopback https
                f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"}
            )
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"kube-apiserver not ready after {timeout:.0f} s: {last}")

    def _write_kubeconfig(self) -> None:
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": "default"}}
            ],
            "current-context": "local",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def kubeconfig_with_server(self, server: str, path: Path) -> Path:
        """The admin kubeconfig pointed at another address (e.g. a proxy in front of the API server)."""
        config = json.loads(self.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = server
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def kubeconfig_for_token(self, token: str, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for another identity, e.g. a ServiceAccount token from `kubectl create token`."""
        config = json.loads(self.kubeconfig.read_text())
        config["users"] = [{"name": "sa", "user": {"token": token}}]
        config["contexts"][0]["context"].update(user="sa", namespace=namespace)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        result = subprocess.run(  # noqa: S603
            [str(self.kubectl_path), *args], capture_output=True, text=True, input=input, env=env, timeout=120
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def stop(self) -> None:
        for proc in reversed(self._procs):  # apiserver first, then etcd
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()


def _down(state_dir: Path) -> None:
    state = state_dir / "state.json"
    if not state.exists():
        print(f"no dev cluster in {state_dir}")
        return
    pids = json.loads(state.read_text())["pids"]
    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in reversed(pids):
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    state.unlink()
    print("dev cluster stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["up", "down", "build"])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".dev-cluster")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build_binaries())
        return 0
    if args.command == "down":
        _down(args.state_dir)
        return 0
    if (args.state_dir / "state.json").exists():
        _down(args.state_dir)
    plane = ControlPlane(args.state_dir, detached=True)
    plane.start()
    plane.kubectl("apply", "-f", str(REPO / "crds"))
    print(f"export KUBECONFIG={plane.kubeconfig.resolve()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
