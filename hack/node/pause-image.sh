#!/usr/bin/env bash
# The pause image, built here (no registry): a static C pause() loop, imported into Docker once as
# registry.k8s.io/pause:3.10. Prints its name. Used by the hand-made node (hack/node/up.sh) and the
# kind node image (hack/kind/node-image.sh).
set -euo pipefail
image=registry.k8s.io/pause:3.10
if ! docker image inspect "$image" >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '#include <unistd.h>\n#include <signal.h>\nstatic void done(int s){(void)s;_exit(0);}\n%s\n' \
    'int main(void){signal(SIGINT,done);signal(SIGTERM,done);for(;;)pause();}' >"$tmp/pause.c"
  gcc -static -O2 -o "$tmp/pause" "$tmp/pause.c"
  tar -C "$tmp" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' - "$image" >/dev/null
fi
echo "$image"
