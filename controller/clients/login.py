"""Kubernetes credentials the way kubectl and client-go find them, through the `kubernetes` package.

kopf's own kubeconfig reader knows only tokens, client certificates and basic auth, resolves
relative paths against the working directory, and reads the service-account token once. The
`kubernetes` package runs exec credential plugins (EKS, GKE, AKS), OIDC and `tokenFile`, resolves
paths against the kubeconfig's folder, and honours KUBERNETES_SERVICE_HOST/PORT in a pod. Every
call loads afresh into a private Configuration (never the package's global default), so a login
after a 401 gets new credentials: a re-run exec plugin, a re-read token file.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
from kubernetes.client import Configuration
from kubernetes.config import ConfigException, incluster_config, kube_config

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# How long in-cluster credentials are trusted before they are read again: the kubelet rotates
# bound tokens on disk well before they expire, and client-go re-reads them every minute too.
IN_CLUSTER_REFRESH = datetime.timedelta(minutes=1)


class KubeLogin:
    """A callable login: each call returns fresh `kopf.ConnectionInfo`.

    `in_cluster_first` is controller-runtime's order for the controller ($KUBECONFIG, then the
    pod's service account, then ~/.kube/config); without it, kubectl's order for the plugin
    (--kubeconfig, $KUBECONFIG, ~/.kube/config, then the service account).
    """

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster_first: bool = True,
        env: Mapping[str, str] | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        self._explicit = kubeconfig
        self._context = context
        self._in_cluster_first = in_cluster_first
        self._env = dict(os.environ if env is None else env)
        self._sa_dir = service_account_dir

    def __call__(self) -> kopf.ConnectionInfo:
        env_config = self._env.get("KUBECONFIG") or None
        home_config = str(Path(self._env.get("HOME", "~")).expanduser() / ".kube" / "config")
        attempts: list[str | None]  # kubeconfig paths; None for the pod's service account
        if self._explicit:
            attempts = [self._explicit]
        elif self._in_cluster_first:
            attempts = [env_config] if env_config else []
            attempts += [None, home_config]
        else:
            attempts = [env_config or home_config, None]
        problems: list[str] = []
        for path in attempts:
            if path is None:
                info = self._in_cluster(problems)
            else:
                info = self._from_kubeconfig(path, problems, required=path in (self._explicit, env_config))
            if info is not None:
                return info
        raise kopf.LoginError("no usable Kubernetes credentials: " + "; ".join(problems))

    def _in_cluster(self, problems: list[str]) -> kopf.ConnectionInfo | None:
        token_file = self._sa_dir / "token"
        if not token_file.is_file():
            problems.append(f"no service-account token at {token_file}")
            return None
        config = Configuration()
        loader = incluster_config.InClusterConfigLoader(
            token_filename=str(token_file),
            cert_filename=str(self._sa_dir / "ca.crt"),
            try_refresh_token=False,  # every login reads afresh; kopf re-logs in on expiry
            environ=self._env,
        )
        try:
            loader.load_and_set(config)
        except ConfigException as exc:
            problems.append(f"in-cluster: {exc}")
            return None
        namespace_file = self._sa_dir / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.is_file() else None
        expires = datetime.datetime.now(datetime.UTC) + IN_CLUSTER_REFRESH
        return _connection_info(config, namespace=namespace or None, expiration=expires)

    def _from_kubeconfig(
        self, path: str, problems: list[str], *, required: bool
    ) -> kopf.ConnectionInfo | None:
        files = [p for p in path.split(os.pathsep) if p]
        if not any(Path(p).expanduser().is_file() for p in files):
            if required:
                raise kopf.LoginError(f"kubeconfig {path} does not exist")
            problems.append(f"no kubeconfig at {path}")
            return None
        config = Configuration()
        try:
            kube_config.load_kube_config(
                config_file=path, context=self._context, client_configuration=config, persist_config=False
            )
            contexts, current = kube_config.list_kube_config_contexts(config_file=path)
            if self._context:
                current = next((c for c in contexts if c.get("name") == self._context), current)
            namespace = ((current or {}).get("context") or {}).get("namespace")
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            # the loader's messages name files and fields, never the credential values
            raise kopf.LoginError(f"kubeconfig {path}: {type(exc).__name__}: {exc}") from None
        return _connection_info(config, namespace=namespace, expiration=None)


def _connection_info(
    config: Any, *, namespace: str | None, expiration: datetime.datetime | None
) -> kopf.ConnectionInfo:
    """The `kubernetes` package's Configuration as kopf's credentials (as kopf's login_via_client)."""
    # Since kubernetes 36 the bearer token sits under BearerToken; exec plugins and OIDC put it
    # there through the loader, and the refresh hook (if any) runs inside this call.
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    scheme, token = None, None
    if header:
        # the loaders keep a token file's trailing newline (`kubectl create token ... > token` writes
        # one); client-go trims it, and httpx refuses it in a header
        parts = header.strip().split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert or None,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file or None,
        private_key_path=config.key_file or None,
        default_namespace=namespace,
        expiration=expiration,
    )
