#!/usr/bin/env bash
# `make image`: mediajob-controller:dev (and, with --sandbox, mediajob-sandbox:dev) on a machine of
# this kind, with or without a reachable registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/docker.sh
# One build at a time: `make test` runs the e2e (which builds both images) beside the image tier,
# and on a new machine both would otherwise make the offline base image at once.
exec 8>/run/lock/mediajob-image.lock
flock 8
base=$(bash hack/base-image.sh)
args=(--network host --build-arg "BASE_IMAGE=$base")
docker build -q "${args[@]}" -t "${IMAGE:-mediajob-controller:dev}" . >/dev/null
echo "built ${IMAGE:-mediajob-controller:dev} on $base" >&2
if [[ ${1:-} == --sandbox ]]; then
  docker build -q "${args[@]}" --target sandbox -t "${SANDBOX_IMAGE:-mediajob-sandbox:dev}" . >/dev/null
  echo "built ${SANDBOX_IMAGE:-mediajob-sandbox:dev}" >&2
fi
