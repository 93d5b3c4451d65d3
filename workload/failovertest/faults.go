package failovertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/api"
)

const failoverMark = api.FailoverMarkAnnotation

type mark = api.FailoverMark

// setMark annotates the node and, when cordon, cordons it, in one patch.
func (c *Runner) setMark(ctx context.Context, node string, m mark, cordon bool) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{failoverMark: string(v)}}}
	if cordon {
		patch["spec"] = map[string]any{"unschedulable": true}
	}
	return c.patchNode(ctx, node, patch)
}

// clearMark removes the annotation and, when the test cordoned the node,
// uncordons it.
func (c *Runner) clearMark(ctx context.Context, node string, m mark) error {
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{failoverMark: nil}}}
	if m.Cordoned {
		patch["spec"] = map[string]any{"unschedulable": false}
	}
	return c.patchNode(ctx, node, patch)
}

func (c *Runner) patchNode(ctx context.Context, node string, patch map[string]any) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	if _, err := c.opts.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "calico-lb-failover-test"}); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	return nil
}

// marks lists the nodes a failover test holds.
func (c *Runner) marks(ctx context.Context) (map[string]mark, error) {
	return nodeMarks(ctx, c.opts.Client)
}

// nodeMarks reads the failover tests' marks off every node, by node.
func nodeMarks(ctx context.Context, client kubernetes.Interface) (map[string]mark, error) {
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := map[string]mark{}
	for _, n := range list.Items {
		v, ok := n.Annotations[failoverMark]
		if !ok {
			continue
		}
		var m mark
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			m = mark{ID: "unreadable"} // zero Until: abandoned
		}
		out[n.Name] = m
	}
	return out, nil
}

// restoreAbandoned puts back the nodes of failover tests whose time is
// up (their controller died, or its restore failed), and returns the
// ones still running and what it restored.
func (c *Runner) restoreAbandoned(ctx context.Context) (running map[string]mark, restored []string, err error) {
	ms, err := c.marks(ctx)
	if err != nil {
		return nil, nil, err
	}
	running = map[string]mark{}
	for node, m := range ms {
		if time.Now().Before(m.Until) {
			running[node] = m
			continue
		}
		if err := c.clearMark(ctx, node, m); err != nil {
			return running, restored, err
		}
		what := "removed the mark of the abandoned failover test " + m.ID + " from " + node
		if m.Cordoned {
			what += " and uncordoned it"
		}
		c.log.Warn(what)
		restored = append(restored, what)
	}
	return running, restored, nil
}

// WatchAbandoned puts back, once their time is up, the nodes of
// failover tests that were running when this controller started: their
// controller died (a test this one starts later restores its own).
//
// An API error is retried with backoff (1 s doubling to 30 s) until the
// check works: giving up would leave a crashed controller's test node
// cordoned for good.
func (c *Runner) WatchAbandoned(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		running, _, err := c.restoreAbandoned(ctx)
		if err != nil {
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			c.log.Warn("could not check the nodes for abandoned failover tests; trying again", "in", backoff, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		var next time.Time
		for _, m := range running {
			if next.IsZero() || m.Until.Before(next) {
				next = m.Until
			}
		}
		if next.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next) + time.Second):
		}
	}
}

// servicePodsOn returns the names of the Service's pods on node, from its
// EndpointSlices (the pods that back it, ready or not).
func (c *Runner) servicePodsOn(ctx context.Context, ns, name, node string) ([]string, error) {
	slices, err := c.opts.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
	if err != nil {
		return nil, fmt.Errorf("endpointslices of %s/%s: %w", ns, name, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.NodeName == nil || *e.NodeName != node || e.TargetRef == nil || e.TargetRef.Kind != "Pod" || seen[e.TargetRef.Name] {
				continue
			}
			seen[e.TargetRef.Name] = true
			out = append(out, e.TargetRef.Name)
		}
	}
	return out, nil
}

// drainable lists the pods a drain evicts from node: all but DaemonSet
// pods (their controller would put them straight back, and the speaker
// is stopped on its own), mirror pods (the kubelet owns them) and pods
// that have finished.
func (c *Runner) drainable(ctx context.Context, node string) ([]corev1.Pod, error) {
	list, err := c.opts.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, fmt.Errorf("pods on %s: %w", node, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.Kind == "DaemonSet" {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// evictionRisks names what evicting pods would lose for good, as kubectl
// drain refuses it without --force and --delete-emptydir-data: a bare pod
// (nothing recreates it) and a pod's emptyDir data.
func evictionRisks(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		name := p.Namespace + "/" + p.Name
		if metav1.GetControllerOf(&p) == nil {
			out = append(out, "pod "+name+", which no controller recreates")
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.EmptyDir != nil {
				out = append(out, "the emptyDir "+v.Name+" of pod "+name)
				break
			}
		}
	}
	return out
}

// evict asks the apiserver to evict a pod, honouring its
// PodDisruptionBudgets: errBudget when one forbids it now.
func (c *Runner) evict(ctx context.Context, p corev1.Pod) error {
	err := c.opts.Client.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsTooManyRequests(err):
		return fmt.Errorf("%w: %v", errBudget, err)
	}
	return fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
}

var errBudget = errors.New("a PodDisruptionBudget forbids the eviction now")

// failSpeaker stops the speaker on node (a crash, or gracefully) and holds
// it down until until.
func (c *Runner) failSpeaker(ctx context.Context, node, test string, graceful bool, until time.Time) (api.SpeakerFailed, error) {
	var out api.SpeakerFailed
	pod, err := c.opts.Speakers.On(ctx, node)
	if err != nil {
		return out, err
	}
	return out, c.opts.Speakers.Post(ctx, pod, "/v1/fail", api.SpeakerFail{Graceful: graceful, Until: until, Test: test}, &out)
}

// resumeSpeaker ends the hold on node's speaker, trying until ctx ends:
// the process may be between Pebble's restarts.
func (c *Runner) resumeSpeaker(ctx context.Context, node string) error {
	for {
		pod, err := c.opts.Speakers.On(ctx, node)
		if err == nil {
			if err = c.opts.Speakers.Post(ctx, pod, "/v1/resume", struct{}{}, nil); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
