package speakerclient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Status lists the speaker pods and, with ask, gathers each one's
// own report (GET /v1/bgp, and /v1/l2 in l2 mode) over the node network.
// The speakers' APIs are the source of truth: the controller holds no
// copy that could go stale. A speaker that cannot be reached is listed
// with the reason, not left out.
// cfg is the config in force (nil before one is loaded).
func (c *Client) Status(ctx context.Context, cfg *config.Config, ask bool) (*api.Speakers, error) {
	out := &api.Speakers{Speakers: []api.SpeakerView{}}
	if cfg != nil {
		out.Mode = cfg.Mode
	}
	pods, err := c.Pods(ctx, "")
	if err != nil {
		return nil, err
	}
	ds, err := c.k8s.AppsV1().DaemonSets(c.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
	switch {
	case err == nil:
		out.Desired = int(ds.Status.DesiredNumberScheduled)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read the speakers' DaemonSet: %w", err)
	}
	out.Speakers = make([]api.SpeakerView, len(pods))
	var asked []int
	for i := range pods {
		p := &pods[i]
		v := &out.Speakers[i]
		*v = api.SpeakerView{Node: p.Spec.NodeName, Pod: p.Name, Address: p.Status.PodIP, Ready: podReady(p)}
		switch {
		case p.DeletionTimestamp != nil:
			v.Error = "pod is terminating"
		case p.Status.Phase != corev1.PodRunning:
			v.Error = "pod is " + string(p.Status.Phase)
		case p.Status.PodIP == "":
			v.Error = "pod has no IP yet"
		case ask:
			asked = append(asked, i)
		}
	}
	concurrently(asked, func(i int) {
		v := &out.Speakers[i]
		var bgp api.BGPStatus
		if err := c.Get(ctx, &pods[i], "/v1/bgp", &bgp); err != nil {
			v.Error = err.Error()
			return
		}
		v.BGP = &bgp
		if out.Mode == config.ModeL2 {
			var l2 api.L2Status
			if err := c.Get(ctx, &pods[i], "/v1/l2", &l2); err != nil {
				v.Error = err.Error()
				return
			}
			v.L2 = &l2
		}
	})
	sort.Slice(out.Speakers, func(i, j int) bool {
		a, b := out.Speakers[i], out.Speakers[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Pod < b.Pod
	})
	return out, nil
}

// Journals reads every speaker's journal since a time, with ip's
// route announcements (GET /v1/journal). Speakers that cannot be reached
// are left out: the timeline says what the others saw.
func (c *Client) Journals(ctx context.Context, since time.Time, ip netip.Addr) ([]api.SpeakerJournal, error) {
	pods, err := c.Pods(ctx, "")
	if err != nil {
		return nil, err
	}
	path := "/v1/journal?" + url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "ip": {ip.String()}}.Encode()
	var asked []int
	for i, p := range pods {
		if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			asked = append(asked, i)
		}
	}
	var (
		mu   sync.Mutex
		out  []api.SpeakerJournal
		errs []error
	)
	concurrently(asked, func(i int) {
		p := &pods[i]
		var j api.SpeakerJournal
		err := c.Get(ctx, p, path, &j)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Spec.NodeName, err))
			return
		}
		if j.Node == "" {
			j.Node = p.Spec.NodeName
		}
		out = append(out, j)
	})
	return out, errors.Join(errs...)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Nodes lists the cluster's nodes with their InternalIPs, marking those
// the speakers run on (speaker-node-selector in cfg, the config in force).
func (c *Client) Nodes(ctx context.Context, cfg *config.Config) (*api.Nodes, error) {
	if cfg == nil {
		return nil, errors.New("no valid config loaded yet: which nodes run speakers is not known")
	}
	sel := labels.Everything()
	if cfg.Speakers.NodeSelector != "" {
		var err error
		if sel, err = labels.Parse(cfg.Speakers.NodeSelector); err != nil {
			return nil, fmt.Errorf("speaker-node-selector: %w", err)
		}
	}
	list, err := c.k8s.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := &api.Nodes{Nodes: []api.NodeView{}}
	for _, n := range list.Items {
		v := api.NodeView{Name: n.Name, Addresses: []string{}, Speaker: sel.Matches(labels.Set(n.Labels)), Unschedulable: n.Spec.Unschedulable}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				v.Ready = c.Status == corev1.ConditionTrue
			}
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				v.Addresses = append(v.Addresses, a.Address)
			}
		}
		out.Nodes = append(out.Nodes, v)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Name < out.Nodes[j].Name })
	return out, nil
}
