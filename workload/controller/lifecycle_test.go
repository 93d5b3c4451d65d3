package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/api"
)

// setStatus writes a Service's status as if an earlier controller had.
func (e *env) setStatus(name string, ips ...string) {
	e.t.Helper()
	svc := e.get(name)
	vip := corev1.LoadBalancerIPModeVIP
	svc.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: &vip})
	}
	if _, err := e.client.CoreV1().Services(e.ns).UpdateStatus(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func TestAdoptionBeforeServing(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.90.0.1-10.90.0.3]}\n")
	// Two Services already hold .1 and .3 (a previous controller gave them);
	// a third is pending. The pending one must get .2, the only free
	// address, and nobody may move.
	e.service("old-1")
	e.setStatus("old-1", "10.90.0.1")
	e.service("old-3")
	e.setStatus("old-3", "10.90.0.3")
	e.service("new")
	r := e.start("a")
	e.waitIPs("new", "10.90.0.2")
	e.waitIPs("old-1", "10.90.0.1")
	e.waitIPs("old-3", "10.90.0.3")
	// Restart: still nothing moves, and nothing is written.
	r.stop()
	writesBefore := e.get("old-1").ResourceVersion
	r2 := e.start("b")
	waitUntil(t, "b leads and is ready", func() bool { c, _ := httpGet(t, r2, "/readyz"); return r2.c.term.Load() != nil && c == 200 })
	time.Sleep(300 * time.Millisecond)
	for name, ip := range map[string]string{"old-1": "10.90.0.1", "new": "10.90.0.2", "old-3": "10.90.0.3"} {
		e.waitIPs(name, ip)
	}
	if rv := e.get("old-1").ResourceVersion; rv != writesBefore {
		t.Fatalf("restart rewrote old-1 (resourceVersion %s -> %s)", writesBefore, rv)
	}
}

func TestTwoControllersOneWriter(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.91.0.0/28], avoid-buggy-ips: false}\n")
	a := e.start("a")
	waitUntil(t, "a leads", func() bool { return a.c.term.Load() != nil })
	b := e.start("b")
	// The standby must be ready (caches synced, leader known) before the
	// Services exist, for "the standby wrote nothing" to mean anything.
	waitUntil(t, "b is a ready standby", func() bool {
		code, _ := httpGet(t, b, "/readyz")
		l := b.c.leader.Load()
		return code == 200 && l != nil && *l == "a"
	})
	for i := range 5 {
		e.service(fmt.Sprint("s", i))
	}
	ips := map[string]string{}
	for i := range 5 {
		ips[fmt.Sprint("s", i)] = e.waitAnyIP(fmt.Sprint("s", i))
	}
	// Only the leader wrote; the standby answers reads from its cache and
	// refuses writes, naming the leader.
	if got := counterValue(t, b, `calico_lb_service_writes_total{result="ok"}`); got != 0 {
		t.Fatalf("standby wrote %v statuses", got)
	}
	var snap Snapshot
	var body string
	waitUntil(t, "the standby's cache has the 5 assignments", func() bool {
		_, body = httpGet(t, b, "/v1/allocations")
		snap = Snapshot{}
		return json.Unmarshal([]byte(body), &snap) == nil && len(snap.Services) == 5
	})
	if snap.Leader || snap.Source != "cache" || snap.LeaderIdentity != "a" {
		t.Fatalf("standby /v1/allocations: %s", body)
	}
	if code, body := httpPost(t, b, "/v1/pool-change"); code != 503 || !strings.Contains(body, "the leader is a") {
		t.Fatalf("standby POST /v1/pool-change: %d %s", code, body)
	}
	// The leader stops: the standby takes over within seconds; nothing moves,
	// and it serves new Services.
	start := time.Now()
	a.stop()
	waitUntil(t, "b leads", func() bool { return b.c.term.Load() != nil })
	t.Logf("takeover after a clean stop: %s", time.Since(start).Round(time.Millisecond))
	e.service("after")
	e.waitAnyIP("after")
	for name, ip := range ips {
		e.waitIPs(name, ip)
	}
}

func TestConfigReload(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  small: {addresses: [10.92.0.1]}\n")
	r := e.start("a")
	e.service("first")
	e.waitIPs("first", "10.92.0.1")
	e.service("second")
	e.waitEvent("second", "AllocationFailed", "no free IPv4 address")

	// A malformed file keeps the last good config and says why.
	if err := os.WriteFile(e.cfgPath, []byte("pools: {small: {addresses: [10.92.0.1/33]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the error is reported", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		return strings.Contains(body, "not a valid CIDR")
	})
	if got := counterValue(t, r, `calico_lb_config_reloads_total{result="error"}`); got < 1 {
		t.Fatalf("reload errors = %v", got)
	}
	if code, _ := httpGet(t, r, "/readyz"); code != 200 {
		t.Fatal("a rejected reload made the controller unready")
	}
	e.waitIPs("first", "10.92.0.1")

	// Growing the pool serves the waiting Service, without a restart.
	e.config("pools:\n  small: {addresses: [10.92.0.1-10.92.0.2]}\n")
	e.waitIPs("second", "10.92.0.2")
	if got := counterValue(t, r, `calico_lb_config_reloads_total{result="ok"}`); got < 2 {
		t.Fatalf("reloads ok = %v", got)
	}
}

func TestPoolChangeHeldBack(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  old: {addresses: [10.93.0.1-10.93.0.2]}\n  new: {addresses: [10.94.0.1-10.94.0.5], auto-assign: false}\n")
	r := e.start("a")
	e.service("web")
	e.waitIPs("web", "10.93.0.1")

	// Dropping "old" would orphan web: held back, web keeps its IP, and
	// both the API and an Event say so.
	e.config("pools:\n  new: {addresses: [10.94.0.1-10.94.0.5]}\n")
	waitUntil(t, "the change is held back", func() bool {
		_, body := httpGet(t, r, "/v1/pool-change")
		return strings.Contains(body, `"pending": true`)
	})
	_, body := httpGet(t, r, "/v1/pool-change")
	var pc PoolChange
	if err := json.Unmarshal([]byte(body), &pc); err != nil || len(pc.Services) != 1 || pc.Services[0].Name != "web" || pc.Services[0].IPs[0] != "10.93.0.1" {
		t.Fatalf("GET /v1/pool-change: %s", body)
	}
	e.waitEvent("web", "PoolChangeHeldBack", "10.93.0.1")
	if got := counterValue(t, r, "calico_lb_pool_change_held_back"); got != 1 {
		t.Fatalf("held-back gauge %v", got)
	}
	e.waitIPs("web", "10.93.0.1")

	// Reverting drops the held-back change.
	e.config("pools:\n  old: {addresses: [10.93.0.1-10.93.0.2]}\n  new: {addresses: [10.94.0.1-10.94.0.5], auto-assign: false}\n")
	waitUntil(t, "the revert clears it", func() bool {
		_, body := httpGet(t, r, "/v1/pool-change")
		return strings.Contains(body, `"pending": false`)
	})
	if code, _ := httpPost(t, r, "/v1/pool-change"); code != 409 {
		t.Fatalf("POST with nothing pending: %d, want 409", code)
	}

	// Held back again, then applied: web moves to the new pool.
	e.config("pools:\n  new: {addresses: [10.94.0.1-10.94.0.5]}\n")
	waitUntil(t, "held back again", func() bool {
		_, body := httpGet(t, r, "/v1/pool-change")
		return strings.Contains(body, `"pending": true`)
	})
	code, body := httpPost(t, r, "/v1/pool-change")
	if code != 200 || !strings.Contains(body, `"applied": true`) {
		t.Fatalf("POST /v1/pool-change: %d %s", code, body)
	}
	e.waitIPs("web", "10.94.0.1")
	if got := counterValue(t, r, "calico_lb_pool_change_held_back"); got != 0 {
		t.Fatalf("held-back gauge after apply: %v", got)
	}
}

func TestOutsidePoolsAtStart(t *testing.T) {
	e := newEnv(t)
	// The pools changed while no controller ran: web holds an address that
	// is in no pool now. It keeps it until the operator applies the change.
	e.config("pools:\n  p: {addresses: [10.95.0.1-10.95.0.3]}\n")
	e.service("web")
	e.setStatus("web", "10.99.0.7")
	r := e.start("a")
	waitUntil(t, "the change is held back", func() bool {
		_, body := httpGet(t, r, "/v1/pool-change")
		return strings.Contains(body, `"pending": true`) && strings.Contains(body, "10.99.0.7")
	})
	e.waitIPs("web", "10.99.0.7")
	if code, body := httpPost(t, r, "/v1/pool-change"); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	e.waitIPs("web", "10.95.0.1")
}

// counterValue reads one sample from a controller's /metrics.
func counterValue(t *testing.T, r *running, series string) float64 {
	t.Helper()
	_, body := httpGet(t, r, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, series+" "), &v)
			return v
		}
	}
	return 0
}

func TestReallocate(t *testing.T) {
	e := newEnv(t)
	// .0 is handed out here (avoid-buggy-ips off): the case the action is for.
	e.config("pools:\n  p: {addresses: [10.96.0.0-10.96.0.3], avoid-buggy-ips: false}\n")
	r := e.start("a")
	e.service("web")
	e.waitIPs("web", "10.96.0.0")
	e.service("db")
	e.waitIPs("db", "10.96.0.1")

	code, body := httpPost(t, r, "/v1/reallocate?service="+e.ns+"/web")
	var res api.Reallocation
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil {
		t.Fatalf("POST /v1/reallocate: %d %s", code, body)
	}
	// Next-fit: the new address is the next free one, not the one just freed.
	if !res.Written || res.OldIPs[0] != "10.96.0.0" || res.NewIPs[0] != "10.96.0.2" || res.Pools[0] != "p" {
		t.Fatalf("reallocation %+v", res)
	}
	e.waitIPs("web", "10.96.0.2")
	e.waitEvent("web", "IPReallocated", "Moved from 10.96.0.0 to 10.96.0.2")
	e.waitIPs("db", "10.96.0.1")
	if got := counterValue(t, r, `calico_lb_allocations_total{result="reallocated"}`); got != 1 {
		t.Fatalf("reallocated counter %v", got)
	}

	// Refusals say why, and move nothing.
	e.service("pinned", func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationIPs: "10.96.0.3"} })
	e.waitIPs("pinned", "10.96.0.3")
	for _, c := range []struct {
		query string
		code  int
		want  string
	}{
		{e.ns + "/nope", 404, "no such Service"},
		{"web", 409, "namespace/name"},
		{e.ns + "/pinned", 409, "explicitly"},
	} {
		code, body := httpPost(t, r, "/v1/reallocate?service="+c.query)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("reallocate %s: %d %q, want %d containing %q", c.query, code, body, c.code, c.want)
		}
	}
	// Only .0 is free: db moves there.
	code, body = httpPost(t, r, "/v1/reallocate?service="+e.ns+"/db")
	if code != 200 || !strings.Contains(body, `"10.96.0.0"`) {
		t.Fatalf("reallocate db: %d %s", code, body)
	}
	e.waitIPs("db", "10.96.0.0")
	// A new Service takes the .1 db left; with the pool full, web cannot
	// move and keeps its address.
	e.service("filler")
	e.waitIPs("filler", "10.96.0.1")
	code, body = httpPost(t, r, "/v1/reallocate?service="+e.ns+"/web")
	if code != 409 || !strings.Contains(body, "no free") {
		t.Fatalf("reallocate in a full pool: %d %s", code, body)
	}
	e.waitIPs("web", "10.96.0.2")
}

func TestReloadNow(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  old: {addresses: [10.97.0.1-10.97.0.2]}\n")
	// The file is polled only once an hour here: what follows is the
	// reload the charm asks for, not the poll.
	r := e.start("a", func(o *Options) { o.ConfigPoll = time.Hour })
	e.service("web")
	e.waitIPs("web", "10.97.0.1")
	digest := func() string {
		data, err := os.ReadFile(e.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		return api.ConfigDigest(data)
	}
	var snap Snapshot
	waitUntil(t, "the first file is in force", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		return json.Unmarshal([]byte(body), &snap) == nil && snap.ConfigDigest == digest()
	})

	// A pool change that would orphan web: the answer to the reload
	// already says it is held back, under the new file's digest.
	e.config("pools:\n  new: {addresses: [10.98.0.1-10.98.0.2]}\n")
	if _, body := httpGet(t, r, "/v1/allocations"); strings.Contains(body, digest()) {
		t.Fatal("the new file is in force before anything read it")
	}
	code, body := httpPost(t, r, "/v1/reload")
	snap = Snapshot{}
	if err := json.Unmarshal([]byte(body), &snap); code != 200 || err != nil || !snap.PendingChange || snap.ConfigDigest != digest() {
		t.Fatalf("POST /v1/reload: %d %s (want held back under %s)", code, body, digest())
	}
	// Reloading an unchanged file changes nothing and still names it.
	if code, body := httpPost(t, r, "/v1/reload"); code != 200 || !strings.Contains(body, digest()) || !strings.Contains(body, `"poolChangeHeldBack": true`) {
		t.Fatalf("second reload: %d %s", code, body)
	}
	// Other bytes, same config (a comment): the digest follows the file.
	e.config("# the same pools\npools:\n  new: {addresses: [10.98.0.1-10.98.0.2]}\n")
	if code, body := httpPost(t, r, "/v1/reload"); code != 200 || !strings.Contains(body, digest()) {
		t.Fatalf("reload of an equivalent file: %d %s", code, body)
	}
	e.waitIPs("web", "10.97.0.1")
}

// A rejected file never passes for the config in force: the answer names
// the in-force file as configDigest and the rejected one apart, and the
// next good file clears it.
func TestRejectedFileDigest(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.99.0.1-10.99.0.2]}\n")
	r := e.start("a", func(o *Options) { o.ConfigPoll = time.Hour })
	digest := func() string {
		data, err := os.ReadFile(e.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		return api.ConfigDigest(data)
	}
	good := digest()
	var snap Snapshot
	waitUntil(t, "the first file is in force", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		return json.Unmarshal([]byte(body), &snap) == nil && snap.ConfigDigest == good
	})
	e.config("pools: [this is not a pool\n")
	bad := digest()
	code, body := httpPost(t, r, "/v1/reload")
	snap = Snapshot{}
	if err := json.Unmarshal([]byte(body), &snap); code != 200 || err != nil || snap.ConfigError == "" {
		t.Fatalf("reload of a broken file: %d %s", code, body)
	}
	if snap.ConfigDigest != good || snap.RejectedConfigDigest != bad {
		t.Fatalf("after a rejected file: configDigest %q (want the file in force, %q), rejectedConfigDigest %q (want %q)",
			snap.ConfigDigest, good, snap.RejectedConfigDigest, bad)
	}
	e.config("pools:\n  p: {addresses: [10.99.0.1-10.99.0.3]}\n")
	_, body = httpPost(t, r, "/v1/reload")
	snap = Snapshot{}
	if err := json.Unmarshal([]byte(body), &snap); err != nil || snap.ConfigDigest != digest() || snap.RejectedConfigDigest != "" || snap.ConfigError != "" {
		t.Fatalf("after a good file again: %s", body)
	}
}

// The nodes with ready endpoints come from the real EndpointSlice
// controller in the end-to-end tests; here, from slices in memory.
func TestReadyNodes(t *testing.T) {
	ready, notReady := true, false
	a, b, c := "node-a", "node-b", "node-c"
	slice := func(svc string, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, Endpoints: eps}
	}
	got := readyNodes([]discoveryv1.EndpointSlice{
		slice("local",
			discoveryv1.Endpoint{NodeName: &b, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			discoveryv1.Endpoint{NodeName: &c, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
			discoveryv1.Endpoint{NodeName: &a},                                               // readiness unknown counts as ready
			discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &ready}}), // no node
		slice("local", discoveryv1.Endpoint{NodeName: &b, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}),
		slice("other", discoveryv1.Endpoint{NodeName: &c, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}}),
	})
	if !slices.Equal(got["web/local"], []string{"node-a", "node-b"}) || len(got["web/other"]) != 0 || len(got) != 1 {
		t.Fatalf("ready nodes: %v", got)
	}
}

func TestServiceFacts(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.89.0.1-10.89.0.2]}\n")
	r := e.start("a")
	e.service("local", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	e.waitIPs("local", "10.89.0.1")
	e.service("cluster")
	e.waitIPs("cluster", "10.89.0.2")
	e.service("waiting")
	e.waitEvent("waiting", "AllocationFailed", "no free IPv4 address")
	var facts api.ServicesFacts
	waitUntil(t, "the waiting Service's reason is known", func() bool {
		code, body := httpGet(t, r, "/v1/services")
		facts = api.ServicesFacts{}
		return code == 200 && json.Unmarshal([]byte(body), &facts) == nil && len(facts.Services) == 3 && facts.Services[2].Waiting != ""
	})
	local, waiting := facts.Services[1], facts.Services[2]
	if facts.Mode != "calico" || local.Name != "local" || local.TrafficPolicy != "Local" || local.HealthCheckNodePort == 0 ||
		len(local.NodePorts) != 1 || local.EndpointNodes == nil || local.Pools[0] != "p" {
		t.Fatalf("local: %+v", local)
	}
	if waiting.Name != "waiting" || len(waiting.IPs) != 0 || !strings.Contains(waiting.Waiting, "no free IPv4 address") {
		t.Fatalf("waiting: %+v", waiting)
	}
	code, body := httpGet(t, r, "/v1/services?service="+e.ns+"/cluster")
	if code != 200 || strings.Count(body, `"namespace":`) != 1 {
		t.Fatalf("one Service: %d %s", code, body)
	}
	if code, body := httpGet(t, r, "/v1/services?service="+e.ns+"/nope"); code != 404 || !strings.Contains(body, "no such Service") {
		t.Fatalf("missing Service: %d %s", code, body)
	}
}

// Released addresses are announced where the operator looks: an IPReleased
// Event names each address and the pool it went back to, when the Service
// stops being a LoadBalancer and when it is deleted (the Event then names
// the deleted Service), also for many at once.
func TestReleaseEvents(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.88.0.0/24]}\n")
	e.start("a")
	e.service("typed")
	ip := e.waitAnyIP("typed")
	svc := e.get("typed")
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.Ports[0].NodePort = 0
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("typed", "IPReleased", "Released "+ip+" to pool p")

	const n = 60
	ips := map[string]string{}
	for i := range n {
		e.service(fmt.Sprintf("gone-%02d", i))
	}
	for i := range n {
		ips[fmt.Sprintf("gone-%02d", i)] = e.waitAnyIP(fmt.Sprintf("gone-%02d", i))
	}
	for name := range ips {
		if err := e.client.CoreV1().Services(e.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, ip := range ips {
		e.waitEvent(name, "IPReleased", "Released "+ip+" to pool p: the Service was deleted")
	}
}

// A Service whose request cannot be met is one decision, however often it
// is retried: the counter of outcomes counts it once, and the gauge of
// waiting Services says why it waits, until it is served.
func TestFailuresCountedOnce(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.87.0.0/24]}\n")
	r := e.start("a")
	e.service("buggy", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.87.0.255" })
	e.waitEvent("buggy", "AllocationFailed", ".255")
	// Every release retries the waiting Services.
	for i := range 5 {
		name := fmt.Sprintf("churn-%d", i)
		e.service(name)
		e.waitAnyIP(name)
		if err := e.client.CoreV1().Services(e.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the release is seen", func() bool {
			return counterValue(t, r, `calico_lb_allocations_total{result="released"}`) == float64(i+1)
		})
	}
	if got := counterValue(t, r, `calico_lb_allocations_total{result="BuggyIP"}`); got != 1 {
		t.Fatalf(`calico_lb_allocations_total{result="BuggyIP"} = %v after 5 retries, want 1`, got)
	}
	// The gauge is read from figures the loop publishes every quarter
	// second, so it may lag the counter it is checked after.
	waitUntil(t, `calico_lb_services_waiting{reason="BuggyIP"} = 1`, func() bool {
		return counterValue(t, r, `calico_lb_services_waiting{reason="BuggyIP"}`) == 1
	})
	// Served: it waits no more.
	svc := e.get("buggy")
	svc.Spec.LoadBalancerIP = "10.87.0.7"
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs("buggy", "10.87.0.7")
	waitUntil(t, "nothing waits", func() bool {
		return counterValue(t, r, `calico_lb_services_waiting{reason="BuggyIP"}`) == 0
	})
}

// What the leader remembers about a Service goes with it: 10,000 Services
// with a MetalLB annotation (which earns a once-only Warning) created and
// deleted leave no Warning state behind in the term.
func TestWarningsForgottenWithTheService(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 Services")
	}
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.80.0.0/18]}\n")
	r := e.start("a")
	const n, workers = 10000, 16
	noNodePorts := false
	each := func(do func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if err := do(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	class := e.class
	each(func(i int) error {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: fmt.Sprintf("s-%05d", i), Annotations: map[string]string{"metallb.io/address-pool": "p"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class, AllocateLoadBalancerNodePorts: &noNodePorts,
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
		_, err := e.client.CoreV1().Services(e.ns).Create(context.Background(), svc, metav1.CreateOptions{})
		return err
	})
	sizes := func() (warned, once int) {
		s, err := inLoop(context.Background(), r.c, func(t *term) ([2]int, error) { return [2]int{len(t.warned), len(t.warnedOnce)}, nil })
		if err != nil {
			t.Fatal(err)
		}
		return s[0], s[1]
	}
	deadline := time.Now().Add(3 * time.Minute)
	for _, once := sizes(); once < n; _, once = sizes() {
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes %d of %d Services were warned about their annotation", once, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	each(func(i int) error {
		return e.client.CoreV1().Services(e.ns).Delete(context.Background(), fmt.Sprintf("s-%05d", i), metav1.DeleteOptions{})
	})
	deadline = time.Now().Add(3 * time.Minute)
	for {
		warned, once := sizes()
		if warned == 0 && once == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting every Service the term still remembers Warnings for %d and %d of them", warned, once)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// /metrics and /healthz read what the allocation loop publishes and never
// call into it: scrapes cannot delay an allocation. The figures are the
// loop's all the same.
func TestScrapesDoNotCallTheLoop(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.81.0.0/24]}\n")
	r := e.start("a")
	for _, name := range []string{"a", "b", "c"} {
		e.service(name)
	}
	for _, name := range []string{"a", "b", "c"} {
		e.waitAnyIP(name)
	}
	waitUntil(t, "the figures show the three", func() bool {
		return counterValue(t, r, `calico_lb_pool_addresses_in_use{family="ipv4",pool="p"}`) == 3
	})
	before := r.c.loopCalls.Load()
	for range 50 {
		if code, _ := httpGet(t, r, "/metrics"); code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		if code, body := httpGet(t, r, "/healthz"); code != 200 {
			t.Fatalf("/healthz: %d %s", code, body)
		}
	}
	if calls := r.c.loopCalls.Load() - before; calls != 0 {
		t.Fatalf("50 scrapes and health checks called into the allocation loop %d times", calls)
	}
}

// A term that ends clears only itself: when the same process leads again
// at once, the old term's end must not wipe the new one (Events and the
// local API would then go nowhere until a restart).
func TestOldTermLeavesTheNewOne(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.83.0.0/28]}\n")
	r := e.start("a")
	waitUntil(t, "the first term runs", func() bool { return r.c.term.Load() != nil })
	first := r.c.term.Load()
	// The same process leads again before the first term has ended.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.c.lead(ctx)
	waitUntil(t, "the second term runs", func() bool { return r.c.term.Load() != first && r.c.term.Load() != nil })
	second := r.c.term.Load()
	r.stop() // the first term ends
	if got := r.c.term.Load(); got != second {
		t.Fatalf("after the first term ended the running term is %p, want the second %p", got, second)
	}
}
