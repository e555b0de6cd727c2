#!/usr/bin/env bash
# Prints the CRI plugin's part of a containerd 1.6 config for a node on this machine: the pause image
# built here (hack/node/pause-image.sh); restrict_oom_score_adj, because root here lacks
# CAP_SYS_RESOURCE (a negative oom_score_adj is refused and every sandbox would fail); runc with the
# cgroupfs driver; Debian's CNI plugins, configured in the directory $1. Used by hack/node/up.sh and
# hack/kind/node-image.sh.
set -euo pipefail
cat <<CONF
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  tolerate_missing_hugepages_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${1:?the CNI config directory}"
CONF
