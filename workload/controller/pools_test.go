package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

func ipv6Only(s *corev1.Service) {
	single := corev1.IPFamilyPolicySingleStack
	s.Spec.IPFamilyPolicy = &single
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
}

// An IPv6 pool written as a prefix never hands out the prefix's all-zeros
// address, the Subnet-Router anycast address (RFC 4291 §2.6.1), unless the
// pool sets avoid-buggy-ips: false; asked for by name, it is refused with
// the reason and the fix.
func TestSubnetRouterAnycastSkipped(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  v6: {addresses: [\"fd00:208::/120\"]}\n  raw: {addresses: [\"fd00:209::/120\"], avoid-buggy-ips: false, auto-assign: false}\n")
	e.start("a")
	e.service("first", ipv6Only)
	e.waitIPs("first", "fd00:208::1")
	e.service("named", ipv6Only, func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationIPs: "fd00:208::"}
	})
	e.waitEvent("named", "AllocationFailed", "fd00:208:: is the Subnet-Router anycast address")
	e.service("raw", ipv6Only, func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationPool: "raw"}
	})
	e.waitIPs("raw", "fd00:209::")
}

// Next-fit keeps its place: a reload that adds an unrelated pool, a pool
// of two ranges and a restart each hand out an address never used before,
// not one released a moment ago.
func TestNextFitKeepsItsPlace(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.96.0.0/24]}\n  two: {addresses: [10.96.1.1-10.96.1.2, 10.96.2.1-10.96.2.2], auto-assign: false}\n")
	r := e.start("a")
	inTwo := func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationPool: "two"} }
	for i, name := range []string{"a", "b", "c"} {
		e.service(name)
		e.waitIPs(name, fmt.Sprintf("10.96.0.%d", i+1))
	}
	e.service("two-a", inTwo)
	e.waitIPs("two-a", "10.96.1.1")
	e.service("two-b", inTwo)
	e.waitIPs("two-b", "10.96.1.2")
	e.delete("a")
	e.delete("two-a")
	e.waitEvent("a", "IPReleased", "10.96.0.1")
	e.waitEvent("two-a", "IPReleased", "10.96.1.1")

	// A reload that only adds a pool.
	e.config("pools:\n  p: {addresses: [10.96.0.0/24]}\n  two: {addresses: [10.96.1.1-10.96.1.2, 10.96.2.1-10.96.2.2], auto-assign: false}\n  unrelated: {addresses: [10.97.0.0/24], auto-assign: false}\n")
	waitUntil(t, "the reload is taken in", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		return strings.Contains(body, "unrelated")
	})
	e.service("d")
	e.waitIPs("d", "10.96.0.4")
	// The second range of a pool before the address released in the first.
	e.service("two-c", inTwo)
	e.waitIPs("two-c", "10.96.2.1")

	// A restart resumes past the highest address in use.
	r.stop()
	e.delete("b")
	e.start("b")
	e.service("f")
	e.waitIPs("f", "10.96.0.5")
}

// poolChange reads GET /v1/pool-change.
func poolChange(t *testing.T, r *running) PoolChange {
	t.Helper()
	_, body := httpGet(t, r, "/v1/pool-change")
	var pc PoolChange
	if err := json.Unmarshal([]byte(body), &pc); err != nil {
		t.Fatalf("GET /v1/pool-change: %v: %s", err, body)
	}
	return pc
}

func viewNames(vs []ServiceView) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	slices.Sort(out)
	return out
}

// While a pool change is held back, a new Service takes an address the new
// pools keep; when none is free it is held back with the others: listed,
// evented and counted. The operator is shown exactly the Services that
// applying the change moves.
func TestAllocationWhileHeldBack(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.98.0.1-10.98.0.12]}\n")
	r := e.start("a")
	var names []string
	for i := range 6 {
		name := fmt.Sprintf("old-%d", i)
		names = append(names, name)
		e.service(name)
		e.waitIPs(name, fmt.Sprintf("10.98.0.%d", i+1))
	}
	// The new pools keep .10-.12 and add another range: old-* would move.
	e.config("pools:\n  p: {addresses: [10.98.0.10-10.98.0.12, 10.98.1.0/24]}\n")
	waitUntil(t, "the change is held back", func() bool { return poolChange(t, r).Pending })
	if got := viewNames(poolChange(t, r).Services); !slices.Equal(got, names) {
		t.Fatalf("held back %v, want %v", got, names)
	}

	// Three new Services get what the new pools keep.
	for i := range 3 {
		name := fmt.Sprintf("new-%d", i)
		e.service(name)
		e.waitIPs(name, fmt.Sprintf("10.98.0.%d", 10+i))
	}
	// Nothing kept is free: the next one is held back with the others.
	e.service("late")
	ip := e.waitAnyIP("late")
	e.waitEvent("late", "PoolChangeHeldBack", ip)
	names = append(names, "late")
	slices.Sort(names)
	if got := viewNames(poolChange(t, r).Services); !slices.Equal(got, names) {
		t.Fatalf("held back %v, want %v", got, names)
	}
	if got := counterValue(t, r, "calico_lb_pool_change_held_back"); got != float64(len(names)) {
		t.Fatalf("held-back gauge %v, want %d", got, len(names))
	}
	// A listed Service that is deleted leaves the list.
	e.delete("old-0")
	names = slices.DeleteFunc(names, func(n string) bool { return n == "old-0" })
	waitUntil(t, "old-0 leaves the list", func() bool { return slices.Equal(viewNames(poolChange(t, r).Services), names) })

	before := map[string]string{}
	for _, n := range append(slices.Clone(names), "new-0", "new-1", "new-2") {
		before[n] = e.waitAnyIP(n)
	}
	code, body := httpPost(t, r, "/v1/pool-change")
	var applied PoolChange
	if err := json.Unmarshal([]byte(body), &applied); code != 200 || err != nil {
		t.Fatalf("apply: %d %s", code, body)
	}
	if got := viewNames(applied.Services); !slices.Equal(got, names) {
		t.Fatalf("apply moved %v, want the %v shown", got, names)
	}
	for n, ip := range before {
		moved := slices.Contains(names, n)
		e.waitFor(n, "settled", func(s *corev1.Service) bool {
			got := ingressStrings(s)
			return len(got) == 1 && (got[0] != ip) == moved
		})
	}
}

// A pool change held back over many Services and reverted at once: each
// Service hears of the revert once, and no PoolChangeHeldBack Event goes
// out after the first PoolChangeReverted (the queued ones are dropped
// rather than sent late), with Events sent at the rate the controller
// uses in production.
func TestPoolChangeEventsNotStale(t *testing.T) {
	e := newEnv(t)
	const n = 300
	oldPools := "pools:\n  p: {addresses: [10.99.0.0/23]}\n  spare: {addresses: [10.99.8.0/24], auto-assign: false}\n"
	e.config(oldPools)
	evCfg := e.cl.Config(cluster.UserAdmin)
	evCfg.QPS, evCfg.Burst = EventQPS, EventBurst
	r := e.start("a", func(o *Options) { o.EventClient = kubernetes.NewForConfigOrDie(evCfg) })
	for i := range n {
		e.service(fmt.Sprintf("s-%03d", i))
	}
	for i := range n {
		e.waitAnyIP(fmt.Sprintf("s-%03d", i))
	}

	// Watch this namespace's pool-change Events from here on, in the
	// order the apiserver stored them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := e.client.CoreV1().Events(e.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// The IPAllocated Events go out first (15 s at this rate).
	for deadline := time.Now().Add(time.Minute); counterValue(t, r, "calico_lb_events_queued") > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the IPAllocated Events were not sent within a minute")
		}
	}

	heldBack, reverted := map[string]int{}, map[string]int{}
	late := 0
	e.config("pools:\n  spare: {addresses: [10.99.8.0/24]}\n")
	// Revert once the first PoolChangeHeldBack Events are out.
	for len(heldBack) < 10 {
		select {
		case <-time.After(time.Minute):
			t.Fatal("no PoolChangeHeldBack Events within a minute")
		case ev := <-w.ResultChan():
			if e, ok := ev.Object.(*corev1.Event); ok && ev.Type == watch.Added && e.Reason == "PoolChangeHeldBack" {
				heldBack[e.InvolvedObject.Name]++
			}
		}
	}
	e.config(oldPools)
	waitUntil(t, "the revert is taken in", func() bool { return !poolChange(t, r).Pending })

	deadline := time.After(2 * time.Minute)
	for len(reverted) < n {
		select {
		case <-deadline:
			t.Fatalf("after 2 minutes, %d of %d Services had a PoolChangeReverted Event", len(reverted), n)
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("event watch closed")
			}
			e, isEvent := ev.Object.(*corev1.Event)
			if !isEvent || ev.Type != watch.Added {
				continue
			}
			switch e.Reason {
			case "PoolChangeHeldBack":
				heldBack[e.InvolvedObject.Name]++
				if len(reverted) > 0 {
					late++
				}
			case "PoolChangeReverted":
				reverted[e.InvolvedObject.Name]++
			}
		}
	}
	time.Sleep(time.Second) // anything still to come would be a duplicate or late
	for drained := false; !drained; {
		select {
		case ev := <-w.ResultChan():
			if e, ok := ev.Object.(*corev1.Event); ok && ev.Type == watch.Added {
				switch e.Reason {
				case "PoolChangeHeldBack":
					heldBack[e.InvolvedObject.Name]++
					late++
				case "PoolChangeReverted":
					reverted[e.InvolvedObject.Name]++
				}
			}
		default:
			drained = true
		}
	}
	if late > 0 {
		t.Errorf("%d PoolChangeHeldBack Events went out after the revert had", late)
	}
	for name, k := range reverted {
		if k != 1 {
			t.Errorf("%s got %d PoolChangeReverted Events, want 1", name, k)
		}
	}
	for name, k := range heldBack {
		if k != 1 {
			t.Errorf("%s got %d PoolChangeHeldBack Events, want at most 1", name, k)
		}
	}
	if len(heldBack) == n {
		t.Errorf("every PoolChangeHeldBack Event went out although the revert came first for most; none was dropped")
	}
	if got := counterValue(t, r, `calico_lb_events_total{result="replaced"}`); got != float64(n-len(heldBack)) {
		t.Errorf("events replaced = %v, want %d (the PoolChangeHeldBack Events not sent)", got, n-len(heldBack))
	}
	t.Logf("%d Services: %d PoolChangeHeldBack sent before the revert, %d PoolChangeReverted", n, len(heldBack), len(reverted))
}

// serviceIn creates a LoadBalancer Service of this test's class in ns.
func (e *env) serviceIn(ns, name string, mod ...func(*corev1.Service)) {
	e.t.Helper()
	class := e.class
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, m := range mod {
		m(svc)
	}
	if _, err := e.client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create %s/%s: %v", ns, name, err)
	}
}

func sharing(key string, ports ...int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[AnnotationSharing] = key
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint("p", p), Port: p, Protocol: corev1.ProtocolTCP})
		}
	}
}

func askIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[AnnotationIPs] = ip
	}
}

// A sharing key belongs to its namespace: another tenant cannot join a
// shared address, nor learn who holds it or under which key, unless the
// pool shares across namespaces. And a later joiner never pushes the
// first holder off: when the first holder takes a port the joiner has,
// the joiner moves.
func TestSharingStaysInItsNamespace(t *testing.T) {
	e := newEnv(t)
	other := e.ns + "-b"
	if _, err := e.client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.client.CoreV1().Namespaces().Delete(context.Background(), other, metav1.DeleteOptions{}) })
	e.config("pools:\n  p: {addresses: [10.82.0.1-10.82.0.9]}\n  open: {addresses: [10.82.1.1-10.82.1.9], auto-assign: false, share-across-namespaces: true}\n")
	e.start("a")
	const key = "tenant-a-secret-key"
	e.service("victim", sharing(key, 80))
	ip := e.waitAnyIP("victim")

	// Another namespace asks for the address with the key: refused, and
	// told nothing about the holder or its key.
	e.serviceIn(other, "attacker", sharing(key, 8080), askIP(ip))
	var msg string
	waitUntil(t, "the attacker is refused", func() bool {
		evs, _ := e.client.CoreV1().Events(other).List(context.Background(), metav1.ListOptions{})
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "attacker" && ev.Reason == "AllocationFailed" {
				msg = ev.Message
				return true
			}
		}
		return false
	})
	if !strings.Contains(msg, "another namespace") || strings.Contains(msg, "victim") || strings.Contains(msg, key) {
		t.Fatalf("the refusal tells another tenant too much, or not why: %q", msg)
	}
	if s, _ := e.client.CoreV1().Services(other).Get(context.Background(), "attacker", metav1.GetOptions{}); len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("the attacker got %v", ingressStrings(s))
	}

	// A joiner of the victim's own namespace takes port 443; when the
	// victim adds 443, the joiner moves and the victim keeps its address.
	e.service("joiner", sharing(key, 443))
	e.waitIPs("joiner", ip)
	victim := e.get("victim")
	victim.Spec.Ports = append(victim.Spec.Ports, corev1.ServicePort{Name: "p443", Port: 443, Protocol: corev1.ProtocolTCP})
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), victim, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("joiner", "moved off the victim's address", func(s *corev1.Service) bool {
		got := ingressStrings(s)
		return len(got) == 1 && got[0] != ip
	})
	e.waitEvent("joiner", "IPReleased", e.ns+"/victim, which held it first")
	if got := ingressStrings(e.get("victim")); len(got) != 1 || got[0] != ip {
		t.Fatalf("the first holder went from %s to %v", ip, got)
	}

	// A pool that shares across namespaces lets them.
	e.service("open-a", sharing("shared", 80), func(s *corev1.Service) { s.Annotations[AnnotationPool] = "open" })
	openIP := e.waitAnyIP("open-a")
	e.serviceIn(other, "open-b", sharing("shared", 8080), askIP(openIP))
	waitUntil(t, "open-b shares", func() bool {
		s, err := e.client.CoreV1().Services(other).Get(context.Background(), "open-b", metav1.GetOptions{})
		return err == nil && len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == openIP
	})
}
