#!/usr/bin/env bash
# Builds a tool from the Go module pinned in hack/<tool>/go.mod, once per version, into a cache
# outside the repo (~/.cache/mediajob-<tool>/<tool>-<version>/), and prints its path. Later runs
# with the same version are instant.
#
#   bash hack/go-tool.sh TOOL MODULE PACKAGE [LDFLAGS]   # LDFLAGS may use $version
set -euo pipefail
tool=$1 module=$2 package=$3 extra=${4:-}
dir=$(cd "$(dirname "$0")/$tool" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
version=$(sed -nE "s#^(require)?[[:space:]]*${module//./\\.} (v[^ ]+).*#\\2#p" "$dir/go.mod" | head -n1)
[[ -n $version ]] || { echo "cannot read $module's version from hack/$tool/go.mod" >&2; exit 1; }
cache_var=MEDIAJOB_${tool^^}_CACHE
cache=${!cache_var:-${XDG_CACHE_HOME:-$HOME/.cache}/mediajob-$tool}/$tool-$version
if [[ -x $cache/$tool ]]; then echo "$cache/$tool"; exit 0; fi
mkdir -p "$cache.partial"
start=$(date +%s)
(cd "$dir" && go build -trimpath -ldflags "-s -w ${extra//\$version/$version}" -o "$cache.partial/$tool" "$package") >&2
rm -rf "$cache" && mv "$cache.partial" "$cache"
echo "built $tool $version in $(($(date +%s) - start))s" >&2
echo "$cache/$tool"
