//go:build tools

// Package tools pins the containerd that the tests' real nodes run: v2,
// as Kubernetes 1.34 expects (Debian's 1.6 is end-of-life), built from the
// Go module proxy with CGO_ENABLED=0. runc comes from Debian.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
