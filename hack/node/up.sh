#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster on this machine (root, cgroup v1, no image registry):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables), a kubelet on a
# second containerd (Debian's, with its own root/state/socket), CNI bridge 10.244.0.0/24 on cni0, a local
# pause image and a tiny cluster DNS (hack/node/dns.py). docs/e2e.md explains every choice.
#
#   hack/node/up.sh     # prints `export KUBECONFIG=...`; hack/node/down.sh removes everything again
#
# Everything lives under $MEDIAJOB_NODE_STATE (default /var/lib/mediajob-e2e) and /run/mediajob-e2e.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${MEDIAJOB_NODE_STATE:-/var/lib/mediajob-e2e}
run=/run/mediajob-e2e
node=${MEDIAJOB_NODE_NAME:-mediajob-e2e-node}
pod_cidr=10.244.0.0/24
service_cidr=10.0.0.0/24
log() { echo "node: $*" >&2; }

[[ $(id -u) == 0 ]] || { echo "hack/node/up.sh must run as root" >&2; exit 1; }
if [[ -e $state/pids ]]; then
  log "a node is already up in $state; tearing it down first"
  bash "$here/down.sh"
fi

# --- packages (a fresh machine of this kind has none of them) -------------------------------------
need=()
for pair in containerd:containerd runc:runc ctr:containerd docker:docker.io dockerd:docker.io \
  iptables:iptables openssl:openssl gcc:gcc python3:python3 ip:iproute2 curl:curl; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || need+=(containernetworking-plugins)
[[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] || need+=(libc6-dev)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; }
fi
if ! docker info >/dev/null 2>&1; then
  if [[ -x $here/../docker.sh ]]; then bash "$here/../docker.sh" >&2; else
    log "starting dockerd"; (setsid dockerd >/tmp/dockerd.log 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
fi

# Pods on the bridge reach Services (DNAT) and each other through iptables: br_netfilter and forwarding.
[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter ||
  log "warning: br_netfilter is not loaded; traffic from a pod to a Service on the same node may fail"
[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
[[ $(cat /proc/sys/net/ipv4/ip_forward) == 1 ]] || echo 1 >/proc/sys/net/ipv4/ip_forward

# --- binaries --------------------------------------------------------------------------------------
cp_bin=$(bash "$here/../controlplane/build.sh")
node_bin=$(bash "$here/build.sh")

mkdir -p "$state"/{pki,etcd,kubelet,cni/net.d,cni/ipam,containerd,logs} "$run"
pids="$state/pids"
: >"$pids"
spawn() { # spawn NAME CMD...: a detached process, logged to $state/logs/NAME.log, pid recorded
  local name=$1; shift
  setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >>"$pids"
}
host_ip=$(ip -4 route get 1.1.1.1 | sed -nE 's/.* src ([0-9.]+).*/\1/p')
[[ -n $host_ip ]] || { echo "cannot find this host's IPv4 address" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

# --- credentials -----------------------------------------------------------------------------------
# One CA signs the API server's client certificate for the kubelet and the kubelet's serving
# certificate (kubectl logs/exec: each side verifies the other); static tokens give every component
# its own identity (the node authorizer sees system:node:<name>; the DNS server may only read Services).
pki=$state/pki
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl req -x509 -new -nodes -newkey rsa:2048 -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 2 \
  -subj "/CN=mediajob-e2e-ca" 2>/dev/null
openssl req -new -nodes -newkey rsa:2048 -keyout "$pki/apiserver-kubelet-client.key" \
  -out "$pki/apiserver-kubelet-client.csr" -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
openssl x509 -req -in "$pki/apiserver-kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
  -CAcreateserial -out "$pki/apiserver-kubelet-client.crt" -days 2 2>/dev/null
openssl req -new -nodes -newkey rsa:2048 -keyout "$pki/kubelet-serving.key" -out "$pki/kubelet-serving.csr" \
  -subj "/O=system:nodes/CN=system:node:$node" 2>/dev/null
printf 'subjectAltName=IP:%s,DNS:%s\nextendedKeyUsage=serverAuth\n' "$host_ip" "$node" >"$pki/kubelet-serving.ext"
openssl x509 -req -in "$pki/kubelet-serving.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -extfile "$pki/kubelet-serving.ext" -out "$pki/kubelet-serving.crt" -days 2 2>/dev/null
tok() { openssl rand -hex 16; }
admin_token=$(tok); kubelet_token=$(tok); kcm_token=$(tok); sched_token=$(tok); proxy_token=$(tok)
dns_token=$(tok)
cat >"$pki/tokens.csv" <<EOF
$admin_token,admin,admin,"system:masters"
$kubelet_token,system:node:$node,kubelet,"system:nodes"
$kcm_token,system:kube-controller-manager,kube-controller-manager
$sched_token,system:kube-scheduler,kube-scheduler
$proxy_token,system:kube-proxy,kube-proxy
$dns_token,system:mediajob-e2e-dns,mediajob-e2e-dns
EOF
chmod 600 "$pki"/*
echo "$admin_token" >"$pki/admin.token"
echo "$dns_token" >"$pki/dns.token"
chmod 600 "$pki/dns.token" "$pki/admin.token"
kubeconfig() { # kubeconfig FILE TOKEN
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$host_ip:$api_port", certificate-authority: "$state/pki/apiserver-chain.crt"}
users:
- name: user
  user: {token: "$2"}
contexts:
- name: e2e
  context: {cluster: e2e, user: user, namespace: default}
current-context: e2e
EOF
  chmod 600 "$1"
}

# --- etcd and kube-apiserver -----------------------------------------------------------------------
spawn etcd "$cp_bin/etcd" --name=default --data-dir="$state/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-cluster="default=http://127.0.0.1:$peer_port" --unsafe-no-fsync=true --log-level=warn
# The API server listens on every address: pods reach it through the `kubernetes` Service (kube-proxy
# DNATs 10.0.0.1:443 to $host_ip:$api_port). Its self-signed chain names kubernetes.default.svc and 10.0.0.1.
spawn kube-apiserver "$cp_bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address=0.0.0.0 --advertise-address="$host_ip" \
  --secure-port="$api_port" --cert-dir="$state/pki/apiserver" \
  --service-cluster-ip-range="$service_cidr" --allow-privileged=true --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.key" --service-account-signing-key-file="$pki/sa.key" \
  --token-auth-file="$pki/tokens.csv" --client-ca-file="$pki/ca.crt" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" --kubelet-certificate-authority="$pki/ca.crt" \
  --kubelet-preferred-address-types=InternalIP --enable-priority-and-fairness=false --v=0
for i in $(seq 120); do
  curl -sfk -H "Authorization: Bearer $admin_token" "https://$host_ip:$api_port/readyz" >/dev/null && break
  ((i < 120)) || { echo "kube-apiserver not ready; see $state/logs/kube-apiserver.log" >&2; exit 1; }
  sleep 0.5
done
# The self-signed serving chain (certificate + its CA) is what pods get as ca.crt (--root-ca-file). It
# names $host_ip, 10.0.0.1 and kubernetes.default.svc but not 127.0.0.1, so clients here use $host_ip.
cp "$state/pki/apiserver/apiserver.crt" "$pki/apiserver-chain.crt"
kubeconfig "$state/admin.kubeconfig" "$admin_token"
kubeconfig "$state/kubelet.kubeconfig" "$kubelet_token"
kubeconfig "$state/kcm.kubeconfig" "$kcm_token"
kubeconfig "$state/scheduler.kubeconfig" "$sched_token"
kubeconfig "$state/proxy.kubeconfig" "$proxy_token"
export KUBECONFIG=$state/admin.kubeconfig
kubectl=$cp_bin/kubectl

spawn kube-controller-manager "$node_bin/kube-controller-manager" --kubeconfig="$state/kcm.kubeconfig" \
  --authentication-kubeconfig="$state/kcm.kubeconfig" --authorization-kubeconfig="$state/kcm.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/apiserver-chain.crt" \
  --service-cluster-ip-range="$service_cidr" --cluster-cidr=10.244.0.0/16 --allocate-node-cidrs=false \
  --controllers='*,-nodeipam,-cloud-node-lifecycle' --v=1
spawn kube-scheduler "$node_bin/kube-scheduler" --kubeconfig="$state/scheduler.kubeconfig" \
  --authentication-kubeconfig="$state/scheduler.kubeconfig" --authorization-kubeconfig="$state/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1

# --- kube-proxy (iptables) -------------------------------------------------------------------------
cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$state/proxy.kubeconfig"}
hostnameOverride: $node
clusterCIDR: 10.244.0.0/16
bindAddress: 0.0.0.0
healthzBindAddress: "127.0.0.1:$(free_port)"
metricsBindAddress: "127.0.0.1:$(free_port)"
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
spawn kube-proxy "$node_bin/kube-proxy" --config="$state/kube-proxy.yaml" --v=1

# --- containerd (a second one, beside Docker's) ----------------------------------------------------
{
  cat <<EOF
version = 2
root = "$state/containerd"
state = "$run/containerd"
[grpc]
  address = "$run/containerd.sock"
EOF
  bash "$here/cri-config.sh" "$state/cni/net.d"
} >"$state/containerd.toml"
spawn containerd containerd --config "$state/containerd.toml"
ctr() { command ctr -a "$run/containerd.sock" -n k8s.io "$@"; }
for i in $(seq 60); do
  ctr version >/dev/null 2>&1 && break
  ((i < 60)) || { echo "containerd did not start; see $state/logs/containerd.log" >&2; exit 1; }
  sleep 0.5
done

bash "$here/cni-config.sh" mediajob-e2e "$pod_cidr" "$state/cni/ipam" >"$state/cni/net.d/10-mediajob.conflist"
# Docker sets FORWARD's policy to DROP; traffic between pods (bridged, seen by br_netfilter) must pass.
iptables -I FORWARD -i cni0 -j ACCEPT -m comment --comment mediajob-e2e
iptables -I FORWARD -o cni0 -j ACCEPT -m comment --comment mediajob-e2e

# --- the pause image, built here (no registry) ------------------------------------------------------
if ! ctr images ls -q | grep -qx registry.k8s.io/pause:3.10; then
  docker save "$(bash "$here/pause-image.sh")" | ctr images import - >/dev/null
fi

# --- kubelet ---------------------------------------------------------------------------------------
cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$run/containerd.sock
# cgroups here are v1: kubelet >= 1.35 refuses them unless told; containerd 1.6 has no RuntimeConfig
# CRI call, so the kubelet's own driver setting must match containerd's (cgroupfs).
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
address: $host_ip
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
clusterDNS: [$host_ip]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podCIDR: $pod_cidr
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
rotateCertificates: false
serverTLSBootstrap: false
# signed by the node CA, which the API server checks (--kubelet-certificate-authority)
tlsCertFile: "$pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$pki/kubelet-serving.key"
EOF
spawn kubelet "$node_bin/kubelet" --config="$state/kubelet.yaml" --kubeconfig="$state/kubelet.kubeconfig" \
  --root-dir="$state/kubelet" --cert-dir="$state/pki/kubelet" --hostname-override="$node" \
  --node-ip="$host_ip" --v=1

# --- cluster DNS -----------------------------------------------------------------------------------
# Its own identity, which may only read Services (as CoreDNS's ClusterRole, without endpoints:
# it answers ClusterIPs only), and the API server's chain verified.
"$kubectl" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "mediajob-e2e-dns"}
rules:
- {apiGroups: [""], resources: [services], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "mediajob-e2e-dns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "mediajob-e2e-dns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:mediajob-e2e-dns"}
EOF
spawn dns python3 "$here/dns.py" --listen "$host_ip" --api "https://$host_ip:$api_port" \
  --token-file "$pki/dns.token" --ca-file "$pki/apiserver-chain.crt"

cat >"$state/env" <<EOF
export KUBECONFIG=$state/admin.kubeconfig
export PATH=$cp_bin:\$PATH
EOF
log "waiting for node $node to become Ready"
for i in $(seq 120); do
  "$kubectl" get node "$node" >/dev/null 2>&1 && break
  ((i < 120)) || { echo "the kubelet did not register; see $state/logs/kubelet.log" >&2; exit 1; }
  sleep 1
done
"$kubectl" wait --for=condition=Ready "node/$node" --timeout=120s >&2
for i in $(seq 60); do # kube-controller-manager creates the default ServiceAccount per namespace
  "$kubectl" -n default get serviceaccount default >/dev/null 2>&1 && break
  ((i < 60)) || { echo "no default ServiceAccount; see $state/logs/kube-controller-manager.log" >&2; exit 1; }
  sleep 1
done
log "up: API https://$host_ip:$api_port (pods: https://10.0.0.1:443), node $node, DNS $host_ip"
echo "export KUBECONFIG=$state/admin.kubeconfig"
