#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io where dockerd is missing, and
# starts dockerd in the background where none runs (a CI machine starts none). Idempotent.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
# `make test` runs the e2e beside pytest: one of them installs and starts the engine, the other waits.
exec 7>/run/lock/mediajob-docker.lock
flock 7
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  echo "installing Debian's docker.io" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null; then
  log=${DOCKERD_LOG:-/var/log/mediajob-dockerd.log}
  echo "starting dockerd (log: $log)" >&2
  nohup dockerd >"$log" 2>&1 7>&- &  # the lock must not live on in the daemon
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not answer within 60 s; see ${DOCKERD_LOG:-/var/log/mediajob-dockerd.log}" >&2
exit 1
