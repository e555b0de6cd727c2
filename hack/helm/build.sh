#!/usr/bin/env bash
# Builds helm from its Go module (pinned in go.mod), once per version, and prints its path.
exec bash "$(dirname "$0")/../go-tool.sh" helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm \
  '-X helm.sh/helm/v4/internal/version.version=$version'
