#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from Go modules, once per version, into a cache outside the repo.
# Prints the directory that holds the binaries. Later runs with the same versions are instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
module_version() { # module_version GO.MOD MODULE: the required version, from a block or a one-line require
  sed -nE "s#^(require)?[[:space:]]*$2 (v[^ ]+).*#\2#p" "$1" | head -n1
}
k8s_version=$(module_version "$here/go.mod" k8s.io/kubernetes)
etcd_version=$(module_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
[[ -n $k8s_version && -n $etcd_version ]] || { echo "cannot read the pinned versions from go.mod" >&2; exit 1; }
cache_root=${MEDIAJOB_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediajob-controlplane}
bin="$cache_root/k8s-$k8s_version-etcd-$etcd_version"
if [[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
  echo "$bin"; exit 0
fi
mkdir -p "$bin.partial"
minor=$(echo "$k8s_version" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
start=$(date +%s)
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin.partial/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/etcd" .) >&2
rm -rf "$bin" && mv "$bin.partial" "$bin"
echo "built control plane $k8s_version + etcd $etcd_version in $(( $(date +%s) - start ))s" >&2
echo "$bin"
