#!/usr/bin/env bash
# Prints the base image for the Dockerfile: the official one if it is here or can be pulled, else an
# equivalent built from Debian packages (debootstrap) and imported once as mediajob-base:bookworm.
# The offline base carries this machine's CA bundle and pip configuration, because pip inside the
# build reaches the package index only the way the host does.
set -euo pipefail
official=${BASE_IMAGE:-python:3.11-slim-bookworm}
offline=mediajob-base:bookworm
if docker image inspect "$official" >/dev/null 2>&1 || timeout 60 docker pull -q "$official" >/dev/null 2>&1; then
  echo "$official"; exit 0
fi
if docker image inspect "$offline" >/dev/null 2>&1; then
  echo "$offline"; exit 0
fi
echo "cannot pull $official: building $offline from Debian packages" >&2
command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
rootfs=$(mktemp -d /var/tmp/mediajob-base.XXXXXX)
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
mirror=$(sed -nE 's#^URIs: *(http[^ ]*debian)/?$#\1#p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
ln -sf python3 "$rootfs/usr/bin/python"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
  -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  - "$offline" >/dev/null
echo "$offline"
