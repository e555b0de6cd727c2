#!/usr/bin/env bash
# kind end-to-end: a real cluster, the real image, the shipped manifests, simulators in-cluster.
# Needs Docker and kind (https://kind.sigs.k8s.io); it is not part of `make test` or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-mediajob-e2e}
command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make e2e needs a running Docker engine" >&2; exit 1; }
command -v kind >/dev/null || { echo "make e2e needs kind on PATH" >&2; exit 1; }
kubectl=${KUBECTL:-kubectl}

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
trap '[[ -n ${KEEP_CLUSTER:-} ]] || kind delete cluster --name "$cluster"' EXIT
docker build -t mediajob-controller:e2e .
kind load docker-image mediajob-controller:e2e --name "$cluster"

"$kubectl" apply -k manifests/e2e
"$kubectl" -n mediajob-system rollout status deployment/mediajob-sandbox --timeout=180s
"$kubectl" -n mediajob-system rollout status deployment/mediajob-controller --timeout=180s

echo "waiting for the mirror to create the 12 MediaJobs"
for _ in $(seq 1 60); do
  n=$("$kubectl" -n mediajob-system get mediajobs --no-headers 2>/dev/null | wc -l)
  [[ $n -ge 12 ]] && break
  sleep 2
done
"$kubectl" -n mediajob-system wait --for=condition=Ready mediajob --all --timeout=300s
"$kubectl" -n mediajob-system get mediajobs
holder=$("$kubectl" -n mediajob-system get lease mediajob-controller -o jsonpath='{.spec.holderIdentity}')
echo "leader: $holder; deleting it to check the failover"
"$kubectl" -n mediajob-system delete pod "$holder" --wait=false
sleep 5
new=$("$kubectl" -n mediajob-system get lease mediajob-controller -o jsonpath='{.spec.holderIdentity}')
[[ -n $new && $new != "$holder" ]] || { echo "no new leader after deleting $holder" >&2; exit 1; }
echo "e2e passed: all MediaJobs Ready, new leader $new"
