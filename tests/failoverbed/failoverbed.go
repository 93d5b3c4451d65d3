// Package failoverbed runs the failover-test action on the real cluster
// beds as an operator would, with the probe agent (`calico-lb probe`) on
// the bed's client, and measures the same outage with an independent
// client there, so that the end-to-end tests and `make bench-failover`
// judge the action's figures the same way.
package failoverbed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/access"
)

// ProbePort is where the bed's probe agent listens.
const ProbePort = 9477

// Build builds the calico-lb binary into dir, for the probe agent.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "calico-lb")
	cmd := exec.Command("go", "build", "-o", bin, "./workload/cmd/calico-lb")
	cmd.Dir = cluster.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build calico-lb: %v\n%s", err, out)
	}
	return bin, nil
}

// Probe is a running probe agent: the action's probe= and probe-token=.
type Probe struct {
	URL, Token string
}

// With adds the probe to an action's params.
func (p Probe) With(params map[string]any) map[string]any {
	out := maps.Clone(params)
	out["probe"], out["probe-token"] = p.URL, p.Token
	return out
}

// Args are the probe's params as `juju run` takes them.
func (p Probe) Args() []string { return []string{"probe=" + p.URL, "probe-token=" + p.Token} }

// StartProbe runs `calico-lb probe` on the bed's client, allowed to probe
// allow (the pools), with a token file it writes, as an operator runs it.
func StartProbe(b *spinebed.Bed, binary, clientIP, allow string) (Probe, error) {
	dir, err := b.Net.TempDir()
	if err != nil {
		return Probe{}, err
	}
	listen := net.JoinHostPort(clientIP, strconv.Itoa(ProbePort))
	tokenFile := filepath.Join(dir, "probe.token")
	if _, err := b.Net.Start(b.Client, filepath.Join(dir, "probe.log"), binary, "probe", "--listen", listen, "--allow", allow, "--token-file", tokenFile); err != nil {
		return Probe{}, err
	}
	url := "http://" + listen
	hc := netns.HTTPClient(b.Client, time.Second)
	if _, err := netns.WaitFor(context.Background(), 10*time.Second, func() bool {
		resp, err := hc.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		return Probe{}, fmt.Errorf("the probe agent on the client did not answer at %s", url)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return Probe{}, fmt.Errorf("the probe agent's token: %w", err)
	}
	return Probe{URL: url, Token: strings.TrimSpace(string(token))}, nil
}

// Client is the independent client: its own TCP connections to the VIP
// every 10 ms from the bed's client namespace, each given 500 ms, timed on
// the test's clock. It shares no code with the probe agent.
type Client struct {
	mu       sync.Mutex
	attempts []attempt
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

type attempt struct {
	at time.Time
	ok bool
}

// StartClient starts probing target (ip:port) from ns.
func StartClient(ns, target string) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{cancel: cancel}
	dial := netns.Dialer(ns, 500*time.Millisecond)
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			at := time.Now()
			c.done.Add(1)
			go func() {
				defer c.done.Done()
				conn, err := dial(context.Background(), "tcp", target)
				if err == nil {
					conn.Close()
				}
				c.mu.Lock()
				c.attempts = append(c.attempts, attempt{at: at, ok: err == nil})
				c.mu.Unlock()
			}()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return c
}

// Stop ends the client and waits for its attempts.
func (c *Client) Stop() {
	c.cancel()
	c.done.Wait()
}

// Outage is how long the client lost the VIP between from and to: from
// the last answer before its first failure in that time to the first
// answer after its last failure (0: no failure), and the failures.
func (c *Client) Outage(from, to time.Time) (time.Duration, int) {
	c.mu.Lock()
	as := append([]attempt(nil), c.attempts...)
	c.mu.Unlock()
	sortByStart(as)
	first, last := -1, -1
	failures := 0
	for i, a := range as {
		if a.ok || a.at.Before(from) || a.at.After(to) {
			continue
		}
		failures++
		if first < 0 {
			first = i
		}
		last = i
	}
	if first < 0 {
		return 0, 0
	}
	begin := as[first].at
	for i := first - 1; i >= 0; i-- {
		if as[i].ok {
			begin = as[i].at
			break
		}
	}
	for i := last + 1; i < len(as); i++ {
		if as[i].ok {
			return as[i].at.Sub(begin), failures
		}
	}
	return time.Since(begin), failures // never answered again
}

func sortByStart(as []attempt) {
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].at.Before(as[j-1].at); j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
}

// Result is one run of the action.
type Result struct {
	Results  map[string]string
	Failed   string // the action's failure, if it failed
	Output   string
	Logs     []string // the action's log lines (action-log)
	OutageMs int64    // the action's outage-ms (-1: none)
	Client   time.Duration
	Failures int
}

// Agree says whether the action's outage and the client's agree within
// max(100 ms, 20 %) of the client's.
func (r Result) Agree() bool {
	if r.OutageMs < 0 {
		return false
	}
	diff := time.Duration(r.OutageMs)*time.Millisecond - r.Client
	tol := max(100*time.Millisecond, r.Client/5)
	return diff <= tol && diff >= -tol
}

// Run runs the failover-test action through the unit's real dispatch and
// measures the client's outage over the time the action measured (from
// the fault to when it saw recovery and began to restore).
func Run(ctx context.Context, u *kubebed.Unit, c *Client, params map[string]any) (Result, error) {
	a, out, err := u.Action(ctx, "failover-test", params)
	if err != nil {
		return Result{Output: out}, fmt.Errorf("failover-test: %v\n%s", err, out)
	}
	r := Result{Results: a.Results, Output: out, Logs: a.Logs, OutageMs: -1}
	if a.Failed != nil {
		r.Failed = *a.Failed
	}
	if v, ok := r.Results["outage-ms"]; ok {
		r.OutageMs, _ = strconv.ParseInt(v, 10, 64)
	}
	if c != nil {
		t0, err := time.Parse(time.RFC3339Nano, r.Results["injected-at"])
		if err == nil {
			rec, _ := strconv.ParseInt(r.Results["recovered-ms"], 10, 64)
			r.Client, r.Failures = c.Outage(t0, t0.Add(time.Duration(rec)*time.Millisecond))
		}
	}
	return r, nil
}

// Restored says what of a failover test is left on the cluster: a node
// still cordoned or still carrying the test's mark, or the controller
// still holding the test's powers (their binding), "" if nothing.
func Restored(ctx context.Context, kube kubernetes.Interface) string {
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			return n.Name + " is still cordoned"
		}
		if v, ok := n.Annotations["calico-lb.io/failover-test"]; ok {
			return n.Name + " still has the test's mark " + v
		}
	}
	bindings, err := kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, b := range bindings.Items {
		if strings.HasPrefix(b.Name, "calico-lb-controller-failover-") {
			return "the controller still holds the failover test's powers (ClusterRoleBinding " + b.Name + ")"
		}
	}
	return ""
}

// Env is a bed ready for failover tests: calico-lb deployed, the
// Services up, the probe agent on the client.
type Env struct {
	Unit  *kubebed.Unit
	VIPs  map[string]string // Service name (namespace shop) -> VIP
	Probe Probe
}

// Apps are the Services the failover tests use, in namespace shop: web
// (Cluster, 2 pods), local (Local, 2 pods on node1 and node2) and pinned
// (Local, 1 pod that can run on node1 only: relocating it cannot work).
var Apps = []kubebed.App{
	{NS: "shop", Name: "web", Replicas: 2},
	{NS: "shop", Name: "local", Replicas: 2, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{"node1", "node2"}},
	{NS: "shop", Name: "pinned", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{"node1"}},
}

// Setup labels the nodes with their racks (node i in rack ri), deploys
// calico-lb with cfg as Juju deploys it, waits for every node's speaker,
// deploys apps and waits until the client gets answers from each, and
// starts the probe agent on the client (at clientIP, allowed pools).
func Setup(ctx context.Context, b *spinebed.Bed, cfg map[string]any, apps []kubebed.App, binary, clientIP, pools string) (*Env, error) {
	kb := b.Kubebed
	for i := range b.Nodes {
		n, err := b.Kube.CoreV1().Nodes().Get(ctx, fmt.Sprint("node", i+1), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		n.Labels["rack"] = fmt.Sprint("r", i+1)
		if _, err := b.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
	}
	u, err := kb.Deploy(ctx, "lb", cfg)
	if err != nil {
		return nil, err
	}
	if _, err := kb.WaitSpeakers(ctx, "lb", len(b.Nodes), 3*time.Minute); err != nil {
		return nil, err
	}
	env := &Env{Unit: u, VIPs: map[string]string{}}
	for _, app := range apps {
		if _, err := kb.Echo(ctx, app); err != nil {
			return nil, err
		}
		vip, err := b.WaitIP(app.NS, app.Name, 30*time.Second)
		if err != nil {
			return nil, err
		}
		env.VIPs[app.Name] = vip
		if err := WaitAnswers(b, vip, time.Minute); err != nil {
			return nil, err
		}
	}
	env.Probe, err = StartProbe(b, binary, clientIP, pools)
	return env, err
}

// WaitAnswers waits until the bed's client gets answers from vip.
func WaitAnswers(b *spinebed.Bed, vip string, limit time.Duration) error {
	if _, err := netns.WaitFor(context.Background(), limit, func() bool {
		_, err := kubebed.Ask(b.Client, vip, time.Second)
		return err == nil
	}); err != nil {
		return fmt.Errorf("the client gets no answer from %s", vip)
	}
	return nil
}

// Settled waits until nothing of a failover test is left (no node
// cordoned or marked), every node's speaker is ready again and the
// client gets answers from vip.
func Settled(ctx context.Context, b *spinebed.Bed, vip string) error {
	if msg := Restored(ctx, b.Kube); msg != "" {
		return errors.New(msg)
	}
	// Calico mode has no speakers.
	if _, err := b.Kube.AppsV1().DaemonSets("lb").Get(ctx, access.SpeakerName, metav1.GetOptions{}); err == nil {
		if _, err := b.Kubebed.WaitSpeakers(ctx, "lb", len(b.Nodes), 3*time.Minute); err != nil {
			return err
		}
	}
	// In l2 mode a resumed speaker takes its IPs back after its hold-down
	// (3 s): let that happen before the next test, or its gratuitous ARPs
	// land in that test's timeline.
	time.Sleep(4 * time.Second)
	return WaitAnswers(b, vip, time.Minute)
}
