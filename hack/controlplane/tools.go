//go:build tools

// Package tools pins the Kubernetes release whose kube-apiserver and kubectl the tests run against.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
