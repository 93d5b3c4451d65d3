module github.com/calico-lb/calico-lb

go 1.26
