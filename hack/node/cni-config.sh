#!/usr/bin/env bash
# Prints the pod network's CNI config for a one-node cluster on this machine: one bridge (cni0) with
# host-local addresses from the subnet $2, and portmap. $1 names the network; $3, if given, is
# host-local's data directory. Used by hack/node/up.sh and hack/kind/node-image.sh.
set -euo pipefail
name=${1:?the network name}
subnet=${2:?the pod subnet}
data_dir=${3:+"\"dataDir\": \"$3\", "}
cat <<CONF
{
  "cniVersion": "0.4.0",
  "name": "$name",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", $data_dir"ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CONF
