#!/usr/bin/env bash
# Removes what hack/node/up.sh started: pods and their network namespaces, the processes it recorded,
# kube-proxy's and CNI's iptables rules, the FORWARD rules it added, cni0, the kubelet's mounts and the
# state. Safe to run twice, and after a half-finished up.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${MEDIAJOB_NODE_STATE:-/var/lib/mediajob-e2e}
run=/run/mediajob-e2e
log() { echo "node down: $*" >&2; }
ctr() { command ctr -a "$run/containerd.sock" -n k8s.io "$@"; }
pid_of() { awk -v n="$1" '$2 == n {print $1}' "$state/pids" 2>/dev/null; }
stop() { # stop NAME: SIGTERM, then SIGKILL after 10 s, only the pid up.sh recorded
  local pid; pid=$(pid_of "$1")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}

# The kubelet goes first, so it does not restart what we remove; then every pod sandbox is stopped
# through the CRI (containerd runs CNI DEL: the veth, the IP and the bridge plugin's masquerade rules).
stop kubelet
if [[ -S $run/containerd.sock ]]; then
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$task" >/dev/null 2>&1; done
  sleep 1
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "$task" >/dev/null 2>&1; done
  for c in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "$c" >/dev/null 2>&1; done
fi
for name in dns kube-proxy kube-scheduler kube-controller-manager containerd kube-apiserver etcd; do stop "$name"; done

# Leftover network namespaces of pods (containerd names them cni-<uuid>), their veths go with them.
for ns in /var/run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount "$ns" 2>/dev/null; rm -f "$ns"
done
ip link del cni0 2>/dev/null
# kube-proxy removes its own chains; the bridge plugin's per-pod CNI-* masquerade chains are swept here.
node_bin=$(bash "$here/build.sh" 2>/dev/null)
[[ -x $node_bin/kube-proxy ]] && "$node_bin/kube-proxy" --cleanup >/dev/null 2>&1
while read -r rule; do
  eval "iptables -t nat ${rule/-A/-D}" 2>/dev/null
done < <(iptables -t nat -S POSTROUTING | grep -E -- '-j CNI-[0-9a-f]+')
for chain in $(iptables -t nat -S | sed -nE 's/^-N (CNI-[0-9a-f]+)$/\1/p'); do
  iptables -t nat -F "$chain" 2>/dev/null; iptables -t nat -X "$chain" 2>/dev/null
done
# The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), in both families.
for ipt in iptables ip6tables; do
  for table in filter nat mangle; do
    while read -r rule; do
      eval "$ipt -t $table ${rule/-A/-D}" 2>/dev/null
    done < <($ipt -t "$table" -S 2>/dev/null | grep -E -- '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
    for chain in $($ipt -t "$table" -S 2>/dev/null | sed -nE 's/^-N (KUBE-[A-Z0-9-]+)$/\1/p'); do
      $ipt -t "$table" -F "$chain" 2>/dev/null; $ipt -t "$table" -X "$chain" 2>/dev/null
    done
  done
done
while iptables -D FORWARD -i cni0 -j ACCEPT -m comment --comment mediajob-e2e 2>/dev/null; do :; done
while iptables -D FORWARD -o cni0 -j ACCEPT -m comment --comment mediajob-e2e 2>/dev/null; do :; done

# Mounts under the state (kubelet volumes, containerd snapshots and shm), deepest first.
for _ in 1 2 3; do
  mounts=$(awk -v s="$state" -v r="$run" 'index($2, s) == 1 || index($2, r) == 1 {print $2}' /proc/mounts | sort -r)
  [[ -n $mounts ]] || break
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done
rm -rf "$state" "$run"
log "done"
