#!/usr/bin/env bash
# Renders manifests/default into manifests/install.yaml (for a plain `kubectl apply -f`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash hack/controlplane/build.sh)
{
  echo "# Rendered from manifests/default by \`make manifests\`: do not edit by hand."
  "$bin/kubectl" kustomize manifests/default
} > manifests/install.yaml
echo "wrote manifests/install.yaml"
