#!/usr/bin/env bash
# `make kind-node-image`: a kind node image made on this machine, where kind's own (kindest/node)
# cannot be pulled. It follows kind's base image recipe (images/base in kind's pinned module: its
# entrypoint, units and config files, used from the module as kind's Dockerfile uses them) on a
# Debian bookworm rootfs made by debootstrap with Debian's containerd, runc and CNI plugins; adds
# kubeadm, kubelet and kubectl built from Go modules (hack/controlplane, hack/node); and preloads
# into the node's containerd every image `kubeadm config images list` names, made here from the same
# builds (etcd, CoreDNS from its Go module, pause: hack/node/pause-image.sh). Use it with
# hack/kind/offline-cluster.yaml. Prints the image name; later runs with the same versions are
# instant. docs/e2e.md says why each piece is as it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0
bash "$root/hack/docker.sh" >&2
cp_bin=$(bash "$root/hack/controlplane/build.sh")
node_bin=$(bash "$root/hack/node/build.sh")
adm_bin=$(bash "$root/hack/node/build.sh" kubeadm)
version=$("$cp_bin/kube-apiserver" --version | awk '{print $2}')
image=${KIND_NODE_IMAGE_NAME:-mediajob/kind-node:$version}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
# One build at a time (the e2e and a hand-run build may both want it).
exec 8>/run/lock/mediajob-kind-node.lock
flock 8
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
start=$(date +%s)
kind_dir=$(cd "$here" && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
files=$kind_dir/images/base/files
[[ -d $files ]] || { echo "kind's base image files are not in its module at $kind_dir" >&2; exit 1; }
work=$(mktemp -d /var/tmp/mediajob-kind-node.XXXXXX)
cid=""
cleanup() {
  [[ -n $cid ]] && docker rm -f "$cid" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# --- the images kubeadm names, from this release's builds ------------------------------------------
mapfile -t wanted < <("$adm_bin/kubeadm" config images list --kubernetes-version "$version" 2>/dev/null)
((${#wanted[@]} >= 6)) || { echo "kubeadm config images list answered: ${wanted[*]}" >&2; exit 1; }
scratch_image() { # name, binary, entrypoint-or-empty
  local dir=$work/img-$RANDOM
  mkdir -p "$dir/usr/local/bin"
  cp "$2" "$dir/usr/local/bin/"
  local changes=(-c 'ENV PATH=/usr/local/bin:/usr/bin:/bin')
  [[ -n $3 ]] && changes+=(-c "ENTRYPOINT [\"$3\"]")
  tar -C "$dir" -c . | docker import "${changes[@]}" - "$1" >/dev/null
}
pause=$(bash "$root/hack/node/pause-image.sh") # also containerd's sandbox_image (hack/node/cri-config.sh)
preload=("$pause")
for want in "${wanted[@]}"; do
  name=${want%:*}
  case ${name##*/} in
    kube-apiserver) scratch_image "$want" "$cp_bin/kube-apiserver" "" ;;
    kube-controller-manager | kube-scheduler) scratch_image "$want" "$node_bin/${name##*/}" "" ;;
    etcd) scratch_image "$want" "$cp_bin/etcd" "" ;;
    coredns)
      tag=${want##*:}
      dns_bin=${XDG_CACHE_HOME:-$HOME/.cache}/mediajob-kind/coredns-$tag
      if [[ ! -x $dns_bin/coredns ]]; then
        GOBIN=$dns_bin.partial go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$tag" >&2
        rm -rf "$dns_bin" && mv "$dns_bin.partial" "$dns_bin"
      fi
      scratch_image "$want" "$dns_bin/coredns" /usr/local/bin/coredns
      ;;
    kube-proxy) # kube-proxy runs iptables: Debian's, on the project's offline base image
      base=$(bash "$root/hack/base-image.sh")
      mkdir -p "$work/proxy"
      cp "$node_bin/kube-proxy" "$work/proxy/"
      printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq %s >/dev/null && rm -rf /var/lib/apt/lists/*\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' \
        "$base" "--no-install-recommends iptables conntrack" >"$work/proxy/Dockerfile"
      docker build -q --network host -t "$want" "$work/proxy" >/dev/null
      ;;
    pause) docker tag "$pause" "$want" ;;
    *) echo "no recipe here for kubeadm's image $want" >&2; exit 1 ;;
  esac
  preload+=("$want")
done

# --- the rootfs: kind's base image recipe on Debian bookworm ---------------------------------------
command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
mirror=$(sed -nE 's#^URIs: *(http[^ ]*debian)/?$#\1#p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
rootfs=$work/rootfs
# bookworm, not kind's trixie: its systemd (252) still boots on a cgroup v1 host like this one
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,ethtool,socat,util-linux,mount,kmod,libseccomp2,procps,ca-certificates,pigz \
  bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
mkdir -p "$rootfs/kind/bin" "$rootfs/etc/systemd/system/kubelet.service.d" "$rootfs/etc/kubernetes/manifests"
install -m 0644 "$files"/kind/README.txt "$rootfs/kind/"
install -m 0755 "$files"/kind/bin/* "$rootfs/kind/bin/"
install -m 0644 "$files"/etc/crictl.yaml "$rootfs/etc/"
install -m 0644 "$files"/etc/default/* "$rootfs/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$rootfs/etc/systemd/system/"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
rm -f "$rootfs/etc/systemd/system/containerd-fuse-overlayfs.service" # (no fuse-overlayfs snapshotter here)
ln -sf /usr/bin/containerd "$rootfs/usr/local/bin/containerd"       # kind's unit runs its own build from there
# containerd 1.6 (Debian's): the hand-made node's CRI settings (hack/node/cri-config.sh) in place of
# kind's config, whose containerd 2 parts (the fuse-overlayfs proxy, a base OCI spec made by its build)
# 1.6 lacks; the cgroupfs driver, as there is no D-Bus in the node for systemd's.
{
  echo "version = 2"
  bash "$root/hack/node/cri-config.sh" /etc/cni/net.d
} >"$rootfs/etc/containerd/config.toml"
# The pod network in place of kindnetd (offline-cluster.yaml turns kind's default CNI off): one
# bridge on the one node, the pod range kind gives it.
mkdir -p "$rootfs/etc/cni/net.d" "$rootfs/opt/cni/bin"
bash "$root/hack/node/cni-config.sh" mediajob-kind 10.244.0.0/24 >"$rootfs/etc/cni/net.d/10-mediajob-bridge.conflist"
install -m 0755 "$adm_bin/kubeadm" "$node_bin/kubelet" "$cp_bin/kubectl" "$rootfs/usr/bin/"
echo "$version" >"$rootfs/kind/version"
# kind's Dockerfile: systemd without the units a container must not run; kind's own enabled
find "$rootfs/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
  "$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
  "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$rootfs/etc/systemd/journald.conf"
chroot "$rootfs" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$rootfs" systemctl mask systemd-binfmt.service >/dev/null 2>&1
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import - "$image-base" >/dev/null
rm -rf "$rootfs"

# --- the images, preloaded into the node's containerd (as kind's node-image build does) -------------
cid=$(docker run -d --entrypoint sleep "$image-base" infinity)
docker exec "$cid" bash -c 'nohup containerd >/dev/null 2>&1 &'
for i in $(seq 60); do
  docker exec "$cid" ctr version >/dev/null 2>&1 && break
  ((i < 60)) || { echo "containerd did not start in the node image" >&2; exit 1; }
  sleep 0.5
done
docker save "${preload[@]}" | docker exec -i "$cid" ctr -n k8s.io images import --all-platforms --no-unpack --digests - >/dev/null
docker exec "$cid" pkill containerd
for _ in $(seq 40); do docker exec "$cid" pgrep -x containerd >/dev/null || break; sleep 0.25; done
docker commit "$cid" "$image-loaded" >/dev/null
# kind's image config (`docker commit --change` takes no STOPSIGNAL on Docker 20.10: a one-line build)
mkdir -p "$work/final"
printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\nCMD []\n' \
  "$image-loaded" >"$work/final/Dockerfile"
docker build -q -t "$image" "$work/final" >/dev/null
docker rmi "$image-loaded" "$image-base" >/dev/null 2>&1 || true
echo "built $image in $(($(date +%s) - start))s (${#preload[@]} images preloaded)" >&2
echo "$image"
