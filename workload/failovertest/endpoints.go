package failovertest

import (
	"context"
	"maps"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/calico-lb/calico-lb/workload/failover"
)

// endpointState is one of a Service's pods as its EndpointSlices show it.
type endpointState struct {
	node  string
	ready bool
}

// endpointWatch follows a Service's EndpointSlices during a failover test
// and turns each change of a pod's endpoint into a timeline event, timed
// when the watch delivered it (the controller's clock).
type endpointWatch struct {
	mu     sync.Mutex
	slices map[string]map[string]endpointState // slice name -> pod -> state
	record func(failover.Event)
}

// watchEndpoints starts following ns/name's EndpointSlices until ctx ends.
func (c *Runner) watchEndpoints(ctx context.Context, ns, name string, record func(failover.Event)) (*endpointWatch, error) {
	ew := &endpointWatch{slices: map[string]map[string]endpointState{}, record: record}
	opts := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name}
	list, err := c.opts.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		ew.slices[list.Items[i].Name] = podStates(&list.Items[i])
	}
	opts.ResourceVersion = list.ResourceVersion
	w, err := c.opts.Client.DiscoveryV1().EndpointSlices(ns).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				es, isSlice := ev.Object.(*discoveryv1.EndpointSlice)
				if !isSlice {
					continue
				}
				now := podStates(es)
				if ev.Type == watch.Deleted {
					now = nil
				}
				ew.apply(es.Name, now, time.Now())
			}
		}
	}()
	return ew, nil
}

func podStates(es *discoveryv1.EndpointSlice) map[string]endpointState {
	out := map[string]endpointState{}
	for _, e := range es.Endpoints {
		if e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
			continue
		}
		st := endpointState{ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if e.NodeName != nil {
			st.node = *e.NodeName
		}
		out[e.TargetRef.Name] = st
	}
	return out
}

// apply takes a slice's new state and records what changed for each pod.
func (ew *endpointWatch) apply(slice string, now map[string]endpointState, at time.Time) {
	ew.mu.Lock()
	before := ew.slices[slice]
	if now == nil {
		delete(ew.slices, slice)
	} else {
		ew.slices[slice] = now
	}
	ew.mu.Unlock()
	for pod, st := range now {
		was, had := before[pod]
		switch {
		case !had && st.ready:
			ew.record(failover.Event{At: at, Event: "endpoint " + pod + " added, ready", Node: st.node, Source: failover.SourceEndpoints})
		case !had:
			ew.record(failover.Event{At: at, Event: "endpoint " + pod + " added, not ready", Node: st.node, Source: failover.SourceEndpoints})
		case was.ready && !st.ready:
			ew.record(failover.Event{At: at, Event: "endpoint " + pod + " not ready", Node: st.node, Source: failover.SourceEndpoints})
		case !was.ready && st.ready:
			ew.record(failover.Event{At: at, Event: "endpoint " + pod + " ready", Node: st.node, Source: failover.SourceEndpoints})
		}
	}
	for pod, st := range before {
		if _, still := now[pod]; !still {
			ew.record(failover.Event{At: at, Event: "endpoint " + pod + " removed", Node: st.node, Source: failover.SourceEndpoints})
		}
	}
}

// pods is every pod's endpoint now (a pod in two slices counts once,
// ready if either says so).
func (ew *endpointWatch) pods() map[string]endpointState {
	ew.mu.Lock()
	defer ew.mu.Unlock()
	out := map[string]endpointState{}
	for _, s := range ew.slices {
		for pod, st := range s {
			if have, ok := out[pod]; ok && have.ready {
				continue
			}
			out[pod] = st
		}
	}
	return maps.Clone(out)
}
