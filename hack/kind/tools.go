//go:build tools

// Package tools pins the kind release that `make e2e-kind` runs (hack/e2e-kind.sh).
package tools

import (
	_ "sigs.k8s.io/kind"
)
