#!/usr/bin/env bash
# Copies what the chart shares with manifests/ into charts/mediajob-controller/files/: the CRD,
# the RBAC objects and the alert rules. One source: tests/cluster/test_chart.py fails when a copy
# is stale, and compares what `helm template` renders with `kubectl kustomize manifests/default`.
set -euo pipefail
cd "$(dirname "$0")/.."
files=charts/mediajob-controller/files
mkdir -p "$files"
cp crds/mediajobs.media.phi.dev.yaml "$files/"
for f in service_account role role_binding mediajob_viewer_role mediajob_editor_role; do
  cp "manifests/rbac/$f.yaml" "$files/"
done
cp manifests/monitoring/prometheusrule.yaml "$files/"
echo "copied the shared objects into $files"
