//go:build tools

// Package tools pins the Kubernetes components that the tests' clusters run:
// kube-apiserver, and for clusters with real nodes kube-controller-manager,
// kube-scheduler, kubelet and kube-proxy, plus kubectl for logs and exec.
// All are built from the Go module proxy at one release (the staging
// modules are replaced by their v0.34.4 releases in go.mod).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
