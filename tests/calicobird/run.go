package calicobird

import (
	"context"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/calico"
)

// Runner keeps every node's BIRD configured as calico-node would: from
// calico's options now and the cluster's Local Services and their ready
// endpoints, rendering again when either changes.
type Runner struct {
	Kube  kubernetes.Interface
	Nodes []Node
	// Options are calico's option values now (as the calico charm has
	// them: the Calico link may change them).
	Options func() map[string]any
	// Apply gives a node's BIRD its new config.
	Apply func(n Node, conf string) error
	// Errorf reports what could not be done (an option calico would choke
	// on, the apiserver away); the last good config stays.
	Errorf func(format string, args ...any)
}

// Configs renders every node's config now.
func (r *Runner) Configs(ctx context.Context) (map[string]string, error) {
	c, err := calico.Parse(r.Options())
	if err != nil {
		return nil, err
	}
	local, err := localIPs(ctx, r.Kube)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range r.Nodes {
		out[n.Name] = Render(c, n, r.Nodes, local[n.Name])
	}
	return out, nil
}

// Run renders and applies every 250 ms what changed, until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	last := map[string]string{}
	for {
		confs, err := r.Configs(ctx)
		if err != nil && r.Errorf != nil {
			r.Errorf("calico stand-in: %v", err)
		}
		for _, n := range r.Nodes {
			if conf, ok := confs[n.Name]; ok && conf != last[n.Name] {
				if err := r.Apply(n, conf); err != nil {
					if r.Errorf != nil {
						r.Errorf("calico stand-in on %s: %v", n.Name, err)
					}
					continue
				}
				last[n.Name] = conf
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// localIPs maps each node to the load-balancer IPs of the Local Services
// with a ready endpoint on it.
func localIPs(ctx context.Context, kube kubernetes.Interface) (map[string][]netip.Addr, error) {
	svcs, err := kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	slices, err := kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	ready := map[string]map[string]bool{} // ns/name -> nodes
	for _, s := range slices.Items {
		key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		for _, e := range s.Endpoints {
			if e.NodeName == nil || e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if ready[key] == nil {
				ready[key] = map[string]bool{}
			}
			ready[key][*e.NodeName] = true
		}
	}
	out := map[string][]netip.Addr{}
	for _, s := range svcs.Items {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			continue
		}
		for node := range ready[s.Namespace+"/"+s.Name] {
			for _, in := range s.Status.LoadBalancer.Ingress {
				if ip, err := netip.ParseAddr(in.IP); err == nil {
					out[node] = append(out[node], ip)
				}
			}
		}
	}
	return out, nil
}
