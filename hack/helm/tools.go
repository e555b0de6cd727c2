//go:build tools

// Package tools pins the Helm release that renders and lints charts/mediajob-controller.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
