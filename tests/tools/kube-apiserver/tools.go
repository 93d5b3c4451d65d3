//go:build tools

// Package tools pins the kube-apiserver that tests and the demo run: a real
// apiserver built from the Go module proxy (the Kubernetes staging modules
// are replaced by their v0.34.4 releases in go.mod).
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
