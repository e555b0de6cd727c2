#!/usr/bin/env bash
# Builds kubelet, kube-controller-manager, kube-scheduler and kube-proxy from Go modules, once per version,
# into a cache outside the repo (the recipe of hack/controlplane/build.sh; same Kubernetes release).
# Prints the directory that holds the binaries. Later runs with the same version are instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
module_version() { sed -nE "s#^(require)?[[:space:]]*$2 (v[^ ]+).*#\2#p" "$1" | head -n1; }
k8s_version=$(module_version "$here/gomod/go.mod" k8s.io/kubernetes)
cp_version=$(module_version "$here/../controlplane/go.mod" k8s.io/kubernetes)
[[ -n $k8s_version ]] || { echo "cannot read the pinned version from hack/node/gomod/go.mod" >&2; exit 1; }
if [[ $k8s_version != "$cp_version" ]]; then
  echo "hack/node/gomod pins $k8s_version but hack/controlplane pins $cp_version: bump both together" >&2
  exit 1
fi
cache_root=${MEDIAJOB_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediajob-controlplane}
# Other commands of the release by name (hack/kind/node-image.sh: kubeadm) go to a directory of their own.
tools=("$@")
if (( ${#tools[@]} )); then
  bin="$cache_root/node-$k8s_version-$(IFS=-; echo "${tools[*]}")"
else
  tools=(kubelet kube-controller-manager kube-scheduler kube-proxy)
  bin="$cache_root/node-$k8s_version"
fi
ok=1
for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || ok=0; done
if (( ok )); then echo "$bin"; exit 0; fi
mkdir -p "$bin.partial"
minor=$(echo "$k8s_version" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
start=$(date +%s)
pkgs=()
for t in "${tools[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
(cd "$here/gomod" && go build -trimpath -ldflags "$ldflags" -o "$bin.partial/" "${pkgs[@]}") >&2
rm -rf "$bin" && mv "$bin.partial" "$bin"
echo "built ${tools[*]} $k8s_version in $(( $(date +%s) - start ))s" >&2
echo "$bin"
