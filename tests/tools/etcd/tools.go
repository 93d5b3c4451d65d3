//go:build tools

// Package tools pins the etcd that backs the test kube-apiserver. Debian's
// etcd 3.4 works too, but kube-apiserver 1.34 logs "Too large resource
// version" on watches against it.
package tools

import _ "go.etcd.io/etcd/server/v3"
