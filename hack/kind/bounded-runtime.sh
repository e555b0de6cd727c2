#!/usr/bin/env bash
# For kind on a host whose capability bounding set is short of one (root here lacks CAP_SYS_RESOURCE),
# where Docker's --privileged fails: registers hack/kind/runc_bounded.py with dockerd as the runtime
# mediajob-bounded (in /etc/docker/daemon.json, reloaded by SIGHUP) and prints the directory to put
# first on PATH for kind (hack/kind/bin: its `docker run` uses that runtime). Prints nothing where the
# bounding set is full. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=mediajob-bounded
full=$(( (1 << 41) - 1 )) # CAP_CHOWN .. CAP_CHECKPOINT_RESTORE
have=$(( 16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status) ))
(( (have & full) == full )) && exit 0
if ! docker info --format '{{json .Runtimes}}' | grep -q "\"$name\""; then
  runtime=/usr/local/libexec/mediajob-runc-bounded # a path that outlives a temporary checkout
  install -D -m 0755 "$here/runc_bounded.py" "$runtime"
  python3 - "$name" "$runtime" <<'PY'
import json, sys
from pathlib import Path
path = Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
config.setdefault("runtimes", {})[sys.argv[1]] = {"path": sys.argv[2]}
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(config, indent=2) + "\n")
PY
  kill -HUP "$(pgrep -xo dockerd)"
  for i in $(seq 20); do
    docker info --format '{{json .Runtimes}}' | grep -q "\"$name\"" && break
    ((i < 20)) || { echo "dockerd did not take the runtime $name (/etc/docker/daemon.json)" >&2; exit 1; }
    sleep 0.5
  done
fi
echo "$here/bin"
