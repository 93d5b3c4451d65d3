package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Facts gathers what verify checks: each served Service's
// addresses, pools, issues, why it waits, its traffic policy and node
// ports, and the nodes with ready endpoints (read from the EndpointSlices
// now: the controller keeps no cache of them). only (ns/name) limits it
// to one Service.
func (c *Controller) Facts(ctx context.Context, only string) (*api.ServicesFacts, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	cfg := c.cfg.Load()
	if cfg == nil {
		return nil, fmt.Errorf("no valid config loaded yet")
	}
	out := &api.ServicesFacts{Mode: snap.Mode, Pools: snap.Pools, Services: []api.ServiceFacts{}, LoadBalancerClass: cfg.LoadBalancerClass}
	if out.CalicoLoadBalancerPools, err = c.calicoLoadBalancerPools(ctx); err != nil {
		out.CalicoPoolsErr = err.Error()
	}
	every, _ := c.services.List(labels.Everything())
	for _, s := range every {
		for _, ip := range foreignExternalIPs(s, cfg.Pools) {
			out.ForeignExternalIPs = append(out.ForeignExternalIPs, fmt.Sprintf("%s/%s: %s", s.Namespace, s.Name, ip))
		}
	}
	sort.Strings(out.ForeignExternalIPs)
	held := map[string]api.ServiceView{}
	for _, s := range snap.Services {
		held[s.Namespace+"/"+s.Name] = s
	}
	warned, _ := inLoop(ctx, c, func(t *term) (map[string]string, error) { return maps.Clone(t.warned), nil })
	var svcs []*corev1.Service
	if only != "" {
		svc, err := c.Served(only, cfg.LoadBalancerClass)
		if err != nil {
			return nil, err
		}
		svcs = []*corev1.Service{svc}
	} else {
		all, _ := c.services.List(labels.Everything())
		for _, s := range all {
			if Managed(s, cfg.LoadBalancerClass) {
				svcs = append(svcs, s)
			}
		}
	}
	readyNodes, err := c.endpointNodes(ctx, only)
	if err != nil {
		return nil, err
	}
	for _, s := range svcs {
		key := s.Namespace + "/" + s.Name
		f := api.ServiceFacts{Namespace: s.Namespace, Name: s.Name, IPs: ipStrings(IngressOf(s)), Pools: held[key].Pools,
			Issues: held[key].Issues, Waiting: warned[key], TrafficPolicy: string(s.Spec.ExternalTrafficPolicy),
			NodePorts: []int32{}, HealthCheckNodePort: s.Spec.HealthCheckNodePort, EndpointNodes: readyNodes[key]}
		if f.EndpointNodes == nil {
			f.EndpointNodes = []string{}
		}
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				f.NodePorts = append(f.NodePorts, p.NodePort)
			}
		}
		out.Services = append(out.Services, f)
	}
	sort.Slice(out.Services, func(i, j int) bool {
		return out.Services[i].Namespace+"/"+out.Services[i].Name < out.Services[j].Namespace+"/"+out.Services[j].Name
	})
	return out, nil
}

// endpointNodes maps ns/name to the nodes with a ready endpoint.
func (c *Controller) endpointNodes(ctx context.Context, only string) (map[string][]string, error) {
	ns, opts := "", metav1.ListOptions{}
	if only != "" {
		var name string
		ns, name, _ = strings.Cut(only, "/")
		opts.LabelSelector = discoveryv1.LabelServiceName + "=" + name
	}
	list, err := c.opts.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list EndpointSlices: %w", err)
	}
	return readyNodes(list.Items), nil
}

// readyNodes maps each Service (ns/name) of the slices to the nodes, sorted,
// where it has an endpoint that is not known to be unready.
func readyNodes(items []discoveryv1.EndpointSlice) map[string][]string {
	out := map[string][]string{}
	for _, es := range items {
		key := es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]
		for _, ep := range es.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if !slices.Contains(out[key], *ep.NodeName) {
				out[key] = append(out[key], *ep.NodeName)
			}
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}
