#!/usr/bin/env bash
# Builds kind from its Go module (pinned in go.mod), once per version, and prints its path.
exec bash "$(dirname "$0")/../go-tool.sh" kind sigs.k8s.io/kind sigs.k8s.io/kind
