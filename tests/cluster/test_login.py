"""Logins with every kubeconfig kubectl accepts, and the pod's rotating token (contract section 8).

Each case talks to the real API server; a login that sends no or wrong credentials gets 401 there.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest

from controller.clients.kube import KubeClient
from controller.clients.login import KubeLogin
from sandbox.controlplane import ControlPlane


def write_kubeconfig(folder: Path, controlplane: ControlPlane, user: dict[str, Any], **cluster: Any) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": controlplane.url, **cluster}}],
        "users": [{"name": "someone", "user": user}],
        "contexts": [
            {"name": "work", "context": {"cluster": "local", "user": "someone", "namespace": "team-a"}}
        ],
        "current-context": "work",
    }
    path = folder / "config"
    path.write_text(json.dumps(config))
    return path


async def whoami(kube: KubeClient) -> str:
    """SelfSubjectReview: the user name the API server authenticated."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = await kube._call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", json=review)
    return str(answer["status"]["userInfo"]["username"])


def exec_plugin(folder: Path, tokens: list[str]) -> Path:
    """A credential plugin that prints an ExecCredential, one token per run, and counts its runs."""
    script = folder / "get-token"
    script.write_text(
        f"""#!{sys.executable}
import json, pathlib
runs = pathlib.Path(__file__).with_name("runs")
n = int(runs.read_text()) if runs.exists() else 0
runs.write_text(str(n + 1))
tokens = {tokens!r}
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": tokens[min(n, len(tokens) - 1)]}}}}))
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


async def test_exec_credential_plugin_and_fresh_credentials_after_a_401(
    controlplane: ControlPlane, tmp_path: Path
) -> None:
    plugin = exec_plugin(tmp_path, ["not-a-valid-token", controlplane.token])
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    config = write_kubeconfig(
        tmp_path, controlplane, user, **{"certificate-authority": str(controlplane.ca_path)}
    )
    kube = KubeClient(KubeLogin(kubeconfig=str(config)))
    try:
        assert kube.default_namespace == "team-a"
        # the first token is refused; the client logs in again, which runs the plugin again
        assert await whoami(kube) == "admin"
        assert (tmp_path / "runs").read_text() == "2"
        # kopf's login handler after a 401 gets fresh credentials, not the cached ones
        info = kube.login()
        assert info.token == controlplane.token
        assert (tmp_path / "runs").read_text() == "3"
    finally:
        await kube.close()


async def test_oidc_id_token(controlplane: ControlPlane, tmp_path: Path) -> None:
    user = {
        "auth-provider": {
            "name": "oidc",
            "config": {
                "client-id": "kubernetes",
                "id-token": controlplane.oidc_token,
                "idp-issuer-url": "https://oidc.invalid",
            },
        }
    }
    config = write_kubeconfig(
        tmp_path, controlplane, user, **{"certificate-authority": str(controlplane.ca_path)}
    )
    kube = KubeClient(KubeLogin(kubeconfig=str(config)))
    try:
        assert await whoami(kube) == "oidc-admin"
    finally:
        await kube.close()


async def test_relative_token_file_and_ca_resolve_against_the_kubeconfig_folder(
    controlplane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "ca.crt").write_bytes(controlplane.ca_path.read_bytes())
    (folder / "token").write_text(controlplane.token)
    config = write_kubeconfig(
        folder, controlplane, {"tokenFile": "token"}, **{"certificate-authority": "ca.crt"}
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    kube = KubeClient(KubeLogin(env={"KUBECONFIG": str(config), "HOME": str(tmp_path)}))
    try:
        assert await whoami(kube) == "admin"
    finally:
        await kube.close()


def test_explicit_kubeconfig_that_does_not_exist_is_a_login_error(tmp_path: Path) -> None:
    with pytest.raises(kopf.LoginError, match="does not exist"):
        KubeLogin(kubeconfig=str(tmp_path / "nope"))()


def test_a_broken_kubeconfig_names_the_file_and_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps({"users": [{"name": "u", "user": {"token": "s3cr3t-token-value"}}]}))
    with pytest.raises(kopf.LoginError) as caught:
        KubeLogin(kubeconfig=str(path))()
    assert str(path) in str(caught.value)
    assert "s3cr3t-token-value" not in str(caught.value)


def service_account_token(controlplane: ControlPlane, namespace: str, name: str) -> str:
    controlplane.kubectl("create", "namespace", namespace, check=False)
    controlplane.kubectl("-n", namespace, "create", "serviceaccount", name, check=False)
    return controlplane.kubectl("-n", namespace, "create", "token", name).stdout.strip()


async def test_in_cluster_token_is_read_again_when_it_rotates(
    controlplane: ControlPlane, tmp_path: Path
) -> None:
    first = service_account_token(controlplane, "login-test", "first")
    second = service_account_token(controlplane, "login-test", "second")
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(first)
    (sa_dir / "ca.crt").write_bytes(controlplane.ca_path.read_bytes())
    (sa_dir / "namespace").write_text("login-test")
    port = controlplane.url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port, "HOME": str(tmp_path)}
    kube = KubeClient(KubeLogin(env=env, service_account_dir=sa_dir))
    try:
        assert kube.default_namespace == "login-test"
        assert kube.info.server == controlplane.url
        assert await whoami(kube) == "system:serviceaccount:login-test:first"
        # the kubelet writes a new token; once the credentials' refresh time passes, it is used
        (sa_dir / "token").write_text(second)
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        kube.info = dataclasses.replace(kube.info, expiration=past)
        assert await whoami(kube) == "system:serviceaccount:login-test:second"
    finally:
        await kube.close()


def test_the_controller_process_logs_in_through_an_exec_plugin(
    controlplane: ControlPlane, tmp_path: Path
) -> None:
    """The shipped entry point, not only the client: `python -m controller` with an exec kubeconfig."""
    plugin = exec_plugin(tmp_path, [controlplane.token])
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}
    config = write_kubeconfig(tmp_path, controlplane, user, **{"insecure-skip-tls-verify": True})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRTABLE_", "NCA_", "KUBE"))},
        "KUBECONFIG": str(config),
        "AIRTABLE_API_KEY": "patLOGINtest.secret",
        "AIRTABLE_BASE_ID": "appABCDEFGHIJKLMN",
        "NCA_API_URL": "http://127.0.0.1:9",
        "NCA_API_KEY": "nca-login-test",
        "WEBHOOK_TOKEN": "hook-login-test",
        "WATCH_NAMESPACE": "login-exec",
        "POLLING_ENABLED": "false",
        "HTTP_PORT": "0",
        "LOG_FORMAT": "text",
    }
    controlplane.kubectl("create", "namespace", "login-exec", check=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        runs = tmp_path / "runs"
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
        while datetime.datetime.now() < deadline and proc.poll() is None:
            if runs.exists() and int(runs.read_text()) >= 2:  # our client, then kopf's login handler
                break
            subprocess.run(["sleep", "0.2"], check=True)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert runs.exists()
        assert int(runs.read_text()) >= 2
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Unauthorized" not in output, output[-3000:]
