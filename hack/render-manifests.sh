#!/usr/bin/env bash
# Renders the namespace and manifests/default into manifests/install.yaml, for a plain
# `kubectl apply -f crds/ -f manifests/install.yaml`: the CRD stays in crds/, applied on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash hack/controlplane/build.sh)
{
  echo "# Rendered from manifests/default by \`make manifests\`: do not edit by hand. The CRD is in crds/."
  cat manifests/default/namespace.yaml
  echo "---"
  "$bin/kubectl" kustomize manifests/default
} > manifests/install.yaml
echo "wrote manifests/install.yaml"
