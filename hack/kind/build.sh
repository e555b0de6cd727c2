#!/usr/bin/env bash
# Builds the kind binary from its Go module (pinned in go.mod), once per version, into a cache
# outside the repo, and prints its path. Later runs with the same version are instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
version=$(sed -nE 's#^(require)?[[:space:]]*sigs.k8s.io/kind (v[^ ]+).*#\2#p' "$here/go.mod" | head -n1)
[[ -n $version ]] || { echo "cannot read kind's version from hack/kind/go.mod" >&2; exit 1; }
cache=${MEDIAJOB_KIND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediajob-kind}/kind-$version
if [[ -x $cache/kind ]]; then echo "$cache/kind"; exit 0; fi
mkdir -p "$cache.partial"
start=$(date +%s)
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$cache.partial/kind" sigs.k8s.io/kind) >&2
rm -rf "$cache" && mv "$cache.partial" "$cache"
echo "built kind $version in $(( $(date +%s) - start ))s" >&2
echo "$cache/kind"
