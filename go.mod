module github.com/calico-lb/calico-lb

go 1.26

require (
	go.yaml.in/yaml/v3 v3.0.4
	k8s.io/apimachinery v0.34.4
)

require (
	github.com/go-logr/logr v1.4.2 // indirect
	k8s.io/klog/v2 v2.130.1 // indirect
	k8s.io/utils v0.0.0-20250604170112-4c0f3b243397 // indirect
)
