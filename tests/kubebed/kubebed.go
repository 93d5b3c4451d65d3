// Package kubebed is a real Kubernetes cluster on a network test bed: the
// control plane with its controller-manager and scheduler, a registry
// holding the images built from this tree (the calico-lb image users
// deploy, the test application, the charm container), and real nodes
// (containerd, kubelet, kube-proxy) in namespaces the bed made. The spine
// and L2 beds put their nodes here; tests then run calico-lb as Juju runs
// it (Unit) and the test application behind their Services (Echo).
package kubebed

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/images"
)

// Options shape the cluster.
type Options struct {
	// Address is where kube-apiserver and the registry listen: the root
	// namespace's address on the bed's management bridge.
	Address string
	Nodes   []cluster.NodeOptions
	// NodeMonitorGracePeriod: see cluster.Options.
	NodeMonitorGracePeriod time.Duration
	Log                    func(string)
}

// Bed is the running cluster.
type Bed struct {
	Cluster  *cluster.Cluster
	Registry *cluster.Registry
	Kube     kubernetes.Interface
	Nodes    map[string]*cluster.Node
	// Timings of the start, for the figures the README quotes.
	ControlPlaneReady, NodesReady time.Duration
}

var (
	buildOnce sync.Once
	built     map[string]v1.Image
	buildErr  error
)

// Images builds the images once per process.
func Images() (map[string]v1.Image, error) {
	buildOnce.Do(func() { built, buildErr = images.Build(cluster.Root()) })
	return built, buildErr
}

// Start builds (once) and pushes the images, starts the control plane and
// every node, and returns when all nodes are Ready. The nodes' network
// namespaces must exist; Start routes pods between them (RouteNodes).
func Start(ctx context.Context, opts Options) (*Bed, error) {
	b := &Bed{Nodes: map[string]*cluster.Node{}}
	if err := b.start(ctx, opts); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bed) start(ctx context.Context, opts Options) (err error) {
	log := opts.Log
	if log == nil {
		log = func(string) {}
	}
	start := time.Now()
	if err := cluster.NodeBinaries(ctx, log); err != nil {
		return err
	}
	if err := cluster.RouteNodes(opts.Nodes, opts.Address); err != nil {
		return err
	}
	if b.Registry, err = cluster.StartRegistry(net.JoinHostPort(opts.Address, "0")); err != nil {
		return err
	}
	imgs, err := Images()
	if err != nil {
		return err
	}
	for name, img := range imgs {
		if err := b.Registry.Push(ctx, name, img); err != nil {
			return err
		}
	}
	var names []string
	for _, n := range opts.Nodes {
		names = append(names, n.Name)
	}
	if b.Cluster, err = cluster.Start(ctx, cluster.Options{BindAddress: opts.Address, Nodes: names,
		NodeMonitorGracePeriod: opts.NodeMonitorGracePeriod, Log: log}); err != nil {
		return err
	}
	b.Kube = b.Cluster.Client(cluster.UserAdmin)
	b.ControlPlaneReady = time.Since(start)
	for _, o := range opts.Nodes {
		o.Registry = b.Registry.Host
		n, err := b.Cluster.StartNode(ctx, o)
		if err != nil {
			return err
		}
		b.Nodes[o.Name] = n
	}
	b.NodesReady = time.Since(start)
	log(fmt.Sprintf("cluster with %d real nodes Ready in %s (control plane %s)", len(opts.Nodes),
		b.NodesReady.Round(time.Millisecond), b.ControlPlaneReady.Round(time.Millisecond)))
	return nil
}

// Image is the full name of one of the images (images.CalicoLB, ...).
func (b *Bed) Image(name string) string { return b.Registry.Ref(name) }

// Close stops the nodes, the control plane and the registry.
func (b *Bed) Close() {
	if b == nil {
		return
	}
	if b.Cluster != nil {
		_ = b.Cluster.Stop()
	}
	if b.Registry != nil {
		_ = b.Registry.Close()
	}
}
