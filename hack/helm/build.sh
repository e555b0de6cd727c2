#!/usr/bin/env bash
# Builds the helm binary from its Go module (pinned in go.mod), once per version, into a cache
# outside the repo, and prints its path. Later runs with the same version are instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
version=$(sed -nE 's#^(require)?[[:space:]]*helm.sh/helm/v4 (v[^ ]+).*#\2#p' "$here/go.mod" | head -n1)
[[ -n $version ]] || { echo "cannot read helm's version from hack/helm/go.mod" >&2; exit 1; }
cache=${MEDIAJOB_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediajob-helm}/helm-$version
if [[ -x $cache/helm ]]; then echo "$cache/helm"; exit 0; fi
mkdir -p "$cache.partial"
start=$(date +%s)
(cd "$here" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
  -o "$cache.partial/helm" helm.sh/helm/v4/cmd/helm) >&2
rm -rf "$cache" && mv "$cache.partial" "$cache"
echo "built helm $version in $(( $(date +%s) - start ))s" >&2
echo "$cache/helm"
