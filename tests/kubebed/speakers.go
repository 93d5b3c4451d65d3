package kubebed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/rock"
)

// WaitSpeakers waits until the speaker DaemonSet in ns has rolled out
// (every pod of its current template, none terminating) with want pods
// Ready, and returns them in node order.
func (b *Bed) WaitSpeakers(ctx context.Context, ns string, want int, limit time.Duration) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	if _, err := netns.WaitFor(ctx, limit, func() bool {
		ds, err := b.Kube.AppsV1().DaemonSets(ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		st := ds.Status
		if st.ObservedGeneration < ds.Generation || int(st.DesiredNumberScheduled) != want ||
			int(st.UpdatedNumberScheduled) != want || int(st.NumberReady) != want {
			return false
		}
		l, err := b.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + access.SpeakerName})
		if err != nil {
			return false
		}
		pods = pods[:0]
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil {
				return false
			}
			if PodReady(&p) {
				pods = append(pods, p)
			}
		}
		return len(pods) == want
	}); err != nil {
		return nil, fmt.Errorf("%d speaker pods Ready, want %d\n%s", len(pods), want, b.Describe(ctx, ns))
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Spec.NodeName, b.Spec.NodeName) })
	return pods, nil
}

// MoveApp moves the pods of the test application ns/name (deployed with
// App.Nodes) to node and waits until they are ready there.
func (b *Bed) MoveApp(ctx context.Context, ns, name, node string) error {
	d, err := b.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	d.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values = []string{node}
	if _, err := b.Kube.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return b.WaitReady(ctx, ns, name, int(*d.Spec.Replicas), 2*time.Minute)
}

// Answer is what the test application answers: the connection as the pod
// saw it.
type Answer struct{ Client, Server, Pod, Node string }

// Ask connects to the test application at host (an IP, IPv6 in brackets)
// from namespace ns, as a client outside the cluster does.
func Ask(ns, host string, limit time.Duration) (Answer, error) {
	var a Answer
	resp, err := netns.HTTPClient(ns, limit).Get("http://" + host + "/")
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&a)
	return a, err
}

// SpeakerPID finds the speaker process of the node whose network namespace
// (and so cgroup) is ns, as the machine sees it.
func SpeakerPID(ns string) (int, error) { return WorkloadPID(ns, "speaker") }

// WorkloadPID finds the `calico-lb <subcommand>` process on the node whose
// network namespace (and so cgroup) is ns.
func WorkloadPID(ns, subcommand string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.HasPrefix(string(cmd), rock.Binary+"\x00"+subcommand+"\x00") {
			continue
		}
		if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); strings.Contains(string(cg), "/"+ns+"/") {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no calico-lb %s process in %s", subcommand, ns)
}

// UID is the (real) user a process runs as.
func UID(pid int) (string, error) {
	if uid, ok := cluster.ProcStatus(pid, "Uid"); ok {
		return uid, nil
	}
	return "", fmt.Errorf("no Uid for process %d", pid)
}

// PodReady reports whether a pod, not being deleted, is Ready.
func PodReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
