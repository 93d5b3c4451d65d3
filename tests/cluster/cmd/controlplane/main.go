// Command controlplane builds the test control plane's binaries, or runs a
// control plane on loopback until interrupted:
//
//	controlplane build      # etcd, the Kubernetes components, containerd and pebble into .cache/bin
//	controlplane up         # start, print the kubeconfig path, wait for Ctrl-C
//	controlplane sweep      # remove what crashed test runs left (their nodes' processes and cgroups, work directories)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "build" && os.Args[1] != "up" && os.Args[1] != "sweep") {
		fmt.Fprintln(os.Stderr, "usage: controlplane build|up|sweep")
		os.Exit(2)
	}
	if os.Args[1] == "sweep" {
		cluster.Sweep()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(s string) { fmt.Fprintln(os.Stderr, s) }
	if os.Args[1] == "build" {
		if _, _, err := cluster.Binaries(ctx, logf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := cluster.NodeBinaries(ctx, logf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if _, err := cluster.PebbleBinary(ctx, logf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	c, err := cluster.Start(ctx, cluster.Options{Log: logf})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Stop()
	kc, err := c.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Printf("KUBECONFIG=%s\n", kc)
	<-ctx.Done()
}
