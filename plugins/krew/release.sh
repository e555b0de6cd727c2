#!/usr/bin/env bash
# Builds the krew archive (the launcher, the wheel, requirements.lock, LICENSE) for the version in
# pyproject.toml and writes its sha256 into plugins/krew/mediajob.yaml. Upload the archive to the
# GitHub release v$VERSION, then submit the manifest to krew-index (or use it with
# `kubectl krew install --manifest=plugins/krew/mediajob.yaml --archive=dist/krew/kubectl-mediajob-v$VERSION.tar.gz`).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
grep -q "^version=$version\$" plugins/krew/kubectl-mediajob || { echo "the launcher's version is not $version" >&2; exit 1; }
grep -q "^  version: v$version\$" plugins/krew/mediajob.yaml || { echo "the manifest's version is not v$version" >&2; exit 1; }
out=dist/krew
rm -rf "$out"
mkdir -p "$out/archive"
"$python" -m pip wheel -q --no-deps -w "$out/archive" .
cp plugins/krew/kubectl-mediajob requirements.lock LICENSE "$out/archive/"
archive="$out/kubectl-mediajob-v$version.tar.gz"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$out/archive" -czf "$archive" .
sha=$(sha256sum "$archive" | cut -d' ' -f1)
sed -i "s/^\(      sha256: \).*/\1\"$sha\"/" plugins/krew/mediajob.yaml
echo "$archive sha256 $sha (written into plugins/krew/mediajob.yaml)"
