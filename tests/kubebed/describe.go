package kubebed

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Describe says what a namespace holds, for a failing test: each pod's
// node, phase and container states, the DaemonSets, the last Events and
// the tail of every container's log.
func (b *Bed) Describe(ctx context.Context, ns string) string {
	var out strings.Builder
	pods, err := b.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&out, "pod %s on %q: %s\n", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&out, "  %s ready=%v restarts=%d state=%+v last=%+v\n", cs.Name, cs.Ready, cs.RestartCount, cs.State, cs.LastTerminationState)
		}
		for _, c := range p.Spec.Containers {
			logs, _ := b.Logs(ctx, ns, p.Name, c.Name)
			if len(logs) > 2500 {
				logs = logs[len(logs)-2500:]
			}
			fmt.Fprintf(&out, "  --- log of %s:\n%s\n", c.Name, logs)
		}
	}
	if dss, err := b.Kube.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range dss.Items {
			fmt.Fprintf(&out, "daemonset %s: desired %d ready %d\n", d.Name, d.Status.DesiredNumberScheduled, d.Status.NumberReady)
		}
	}
	if evs, err := b.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		items := evs.Items
		if len(items) > 30 {
			items = items[len(items)-30:]
		}
		for _, e := range items {
			fmt.Fprintf(&out, "event %s %s/%s %s: %s\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return out.String()
}
