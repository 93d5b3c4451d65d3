package failovertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failover"
)

// faults injects a run's fault on its target node and puts back what it
// changed. Each change is noted before it is made, so that restore undoes
// a fault that failed half way.
type faults struct {
	r      *failoverRun
	target string
	until  time.Time

	marked, cordoned, speakerStopped, restored bool
	removed                                    []string
}

func (f *faults) event(what string) {
	f.r.record(failover.Event{At: time.Now(), Event: what, Node: f.target, Source: failover.SourceController})
}

func (f *faults) inject(ctx context.Context) error {
	req := f.r.req
	cordon := req.Mode == failover.ModePod || req.Mode == failover.ModeNode
	if cordon {
		n, err := f.r.c.opts.Client.CoreV1().Nodes().Get(ctx, f.target, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", f.target, err)
		}
		cordon = !n.Spec.Unschedulable // one cordoned already stays so
	}
	f.marked, f.cordoned = true, cordon
	if err := f.r.c.setMark(ctx, f.target, mark{ID: f.r.report.ID, Service: req.Service, Until: f.until, Cordoned: cordon}, cordon); err != nil {
		return err
	}
	if cordon {
		f.event("cordoned")
		f.r.step("cordoned %s", f.target)
	}
	switch req.Mode {
	case failover.ModePod:
		pods, err := f.r.c.servicePodsOn(ctx, f.r.ns, f.r.name, f.target)
		if err != nil {
			return err
		}
		for _, p := range pods {
			f.removed = append(f.removed, p)
			if err := f.r.c.opts.Client.CoreV1().Pods(f.r.ns).Delete(ctx, p, metav1.DeleteOptions{}); err != nil {
				return fmt.Errorf("delete pod %s/%s: %w", f.r.ns, p, err)
			}
			f.event("pod " + p + " deleted")
			f.r.step("deleted %s/%s on %s", f.r.ns, p, f.target)
		}
	case failover.ModeNode:
		if err := f.drain(ctx); err != nil {
			return err
		}
		return f.stopSpeaker(ctx)
	case failover.ModeSpeaker:
		return f.stopSpeaker(ctx)
	}
	return nil
}

// drain evicts the node's pods, retrying those a PodDisruptionBudget
// holds back until the run's context ends.
func (f *faults) drain(ctx context.Context) error {
	pods, err := f.r.c.drainable(ctx, f.target)
	if err != nil {
		return err
	}
	// The test runs in calico-lb's own pod: evicting it would end the
	// test before it restores anything.
	own := f.r.c.opts.PodName
	if i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Namespace == f.r.c.opts.Namespace && p.Name == own }); own != "" && i >= 0 {
		pods = slices.Delete(pods, i, i+1)
		f.r.step("leaving calico-lb's own pod %s on %s: the test runs in it", own, f.target)
	}
	if risks := evictionRisks(pods); len(risks) > 0 {
		if !f.r.req.Force {
			return fmt.Errorf("draining %s would lose %s; run with force=true to drain anyway, or use mode=speaker", f.target, strings.Join(risks, "; "))
		}
		f.r.step("force=true: draining %s anyway, losing %s", f.target, strings.Join(risks, "; "))
	}
	f.r.step("draining %s: %d pods to evict", f.target, len(pods))
	for len(pods) > 0 {
		var held []string
		rest := pods[:0]
		for _, p := range pods {
			err := f.r.c.evict(ctx, p)
			switch {
			case err == nil:
				f.removed = append(f.removed, p.Name)
				f.event("pod " + p.Namespace + "/" + p.Name + " evicted")
			case errors.Is(err, errBudget):
				held = append(held, p.Namespace+"/"+p.Name)
				rest = append(rest, p)
			default:
				return err
			}
		}
		pods = rest
		if len(pods) == 0 {
			break
		}
		f.r.step("a PodDisruptionBudget holds back %v; trying again", held)
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain %s: PodDisruptionBudgets still hold back %v", f.target, held)
		case <-time.After(time.Second):
		}
	}
	f.r.step("drained %s", f.target)
	return nil
}

func (f *faults) stopSpeaker(ctx context.Context) error {
	f.speakerStopped = true
	if _, err := f.r.c.failSpeaker(ctx, f.target, f.r.report.ID, f.r.req.Graceful, f.until); err != nil {
		return err
	}
	if f.r.req.Graceful {
		f.event("speaker stopped gracefully: it withdraws first")
		f.r.step("stopped the speaker on %s gracefully; it is held down until restored", f.target)
	} else {
		f.event("speaker killed (SIGKILL: nothing withdrawn)")
		f.r.step("killed the speaker on %s (SIGKILL, as a crash); it is held down until restored", f.target)
	}
	return nil
}

// restore puts back what inject changed, once, with its own time: the
// run's may be spent.
func (f *faults) restore() {
	if f.restored {
		return
	}
	f.restored = true
	ctx, cancel := context.WithTimeout(context.Background(), restoreFor)
	defer cancel()
	var restored []string
	if f.speakerStopped {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		err := f.r.c.resumeSpeaker(rctx, f.target)
		rcancel()
		if err != nil {
			restored = append(restored, fmt.Sprintf("the speaker on %s could not be resumed (%v); it resumes by itself at %s", f.target, err, f.until.UTC().Format(time.RFC3339)))
		} else {
			f.event("speaker resumed")
			what := "the speaker on " + f.target + " resumed"
			if took, ok := f.speakerBack(ctx); ok {
				what += fmt.Sprintf(", reporting again after %s", took.Round(time.Millisecond))
			} else {
				what += ", but it did not report ready within 30 s: see bgp-status"
			}
			restored = append(restored, what)
		}
	}
	if f.marked {
		if err := f.r.c.clearMark(ctx, f.target, mark{Cordoned: f.cordoned}); err != nil {
			restored = append(restored, fmt.Sprintf("%s could not be put back (%v): the next controller start or test does it after %s", f.target, err, f.until.UTC().Format(time.RFC3339)))
		} else if f.cordoned {
			f.event("uncordoned")
			restored = append(restored, "uncordoned "+f.target)
		}
	}
	for _, s := range restored {
		f.r.step("restored: %s", s)
	}
	f.r.mu.Lock()
	f.r.report.Restored = append(f.r.report.Restored, restored...)
	f.r.mu.Unlock()
}

// speakerBack waits (30 s at most) until the target's speaker reports
// again without error (and, in spine mode, with a session up).
func (f *faults) speakerBack(ctx context.Context) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < 30*time.Second {
		if st, err := f.r.c.opts.Speakers.Status(ctx, f.r.c.opts.Config(), true); err == nil {
			i := slices.IndexFunc(st.Speakers, func(v api.SpeakerView) bool { return v.Node == f.target })
			if i >= 0 && speakerWorking(st.Mode, st.Speakers[i]) {
				return time.Since(start), true
			}
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(250 * time.Millisecond):
		}
	}
	return 0, false
}

// speakerWorking: the speaker reports without error and, in spine mode,
// has a session up.
func speakerWorking(mode config.Mode, v api.SpeakerView) bool {
	if v.Error != "" {
		return false
	}
	if mode == config.ModeL2 {
		return v.L2 != nil && v.L2.Error == ""
	}
	return v.BGP != nil && v.BGP.Error == "" && slices.ContainsFunc(v.BGP.Peers, func(p api.PeerStatus) bool { return p.State == "established" })
}
