package speaker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	gobgpapi "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failovertest/speakerhook"
)

// The BGP tests run GoBGP inside a node's network namespace. A namespace
// belongs to a thread and GoBGP uses many goroutines, so the test binary
// re-executes itself there as a "speaker child" that takes commands as JSON
// lines on stdin.
const childEnv = "CALICO_LB_BGP_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

type command struct {
	Op       string       `json:"op"` // start, peers, routes, status, stop
	ASN      uint32       `json:"asn,omitempty"`
	RouterID netip.Addr   `json:"routerID,omitempty"`
	Peers    []Peer       `json:"peers,omitempty"`
	Routes   []Route      `json:"routes,omitempty"`
	Status   []PeerStatus `json:"status,omitempty"`
	Error    string       `json:"error,omitempty"`
	// A whole Speaker: spine-peers (YAML) to start it with, and what a
	// teardown measured.
	SpinePeers string        `json:"spinePeers,omitempty"`
	Readyz     *readyzReport `json:"readyz,omitempty"`
	// The journal's events for IP (journal).
	IP      netip.Addr          `json:"ip,omitempty"`
	Journal *api.SpeakerJournal `json:"journal,omitempty"`
	// The L2 responder (l2_test.go): its interfaces, the IPs it owns,
	// its status, and how many files the process holds open.
	Ifaces []string     `json:"ifaces,omitempty"`
	IPs    []netip.Addr `json:"ips,omitempty"`
	L2     *L2Status    `json:"l2,omitempty"`
	FDs    int          `json:"fds,omitempty"`
}

// readyzReport is how /readyz answered while the speaker tore BGP down.
type readyzReport struct {
	Polls      int           `json:"polls"`
	Slowest    time.Duration `json:"slowest"`
	Failed     int           `json:"failed"`
	TeardownIn time.Duration `json:"teardownIn"`
}

func runChild() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	var b *BGP
	var sp *Speaker
	var resp *Responder
	journal := speakerhook.NewJournal()
	var api *httptest.Server
	node := Node{Name: "node", Addresses: []netip.Addr{netip.MustParseAddr("10.211.1.2")}}
	ctx := context.Background()
	for in.Scan() {
		var c command
		reply := command{}
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			reply.Error = err.Error()
		} else {
			var err error
			switch c.Op {
			case "start":
				if b, err = StartBGP(ctx, c.ASN, c.RouterID, log); err == nil {
					b.SetObserver(journal)
				}
			case "l2start", "l2ifaces", "l2owned", "l2status":
				resp = l2Child(ctx, log, resp, c, &reply)
			case "journal":
				j := journal.Since(time.Time{}, c.IP)
				reply.Journal = &j
			case "peers":
				b.SetPeers(c.Peers, nil)
			case "routes":
				err = b.SetRoutes(c.Routes)
			case "status":
				reply.Status = b.Status()
			case "received":
				// Paths a peer sent that made it into the global RIB.
				var n uint32
				err = b.srv.(*gobgpServer).s.ListPath(apiutil.ListPathRequest{TableType: gobgpapi.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC}, func(_ bgp.NLRI, paths []*apiutil.Path) {
					for _, p := range paths {
						if p.PeerAddress.IsValid() && !p.PeerAddress.IsUnspecified() {
							n++
						}
					}
				})
				reply.ASN = n
			case "adjin":
				// Paths the peers sent, kept before the import policy.
				var n uint32
				for _, peer := range b.Status() {
					err = b.srv.(*gobgpServer).s.ListPath(apiutil.ListPathRequest{TableType: gobgpapi.TableType_TABLE_TYPE_ADJ_IN, Name: peer.Address, Family: bgp.RF_IPv4_UC}, func(_ bgp.NLRI, paths []*apiutil.Path) {
						n += uint32(len(paths))
					})
				}
				reply.ASN = n
			case "limitretry":
				b.mu.Lock()
				b.limitRetry = time.Duration(c.ASN) * time.Millisecond
				b.mu.Unlock()
			case "speaker":
				o := config.DefaultOptions()
				o.PeeringMode, o.SpinePeers = "spine", c.SpinePeers
				var cfg *config.Config
				if cfg, _, err = config.FromOptions(o); err == nil {
					sp = NewSpeaker(Options{NodeName: node.Name, Log: log})
					sp.cfg, sp.synced = cfg, true
					api = httptest.NewServer(sp.Handler())
					sp.pass(ctx, world{node: node})
				}
			case "flood":
				// Routes enough to fill the socket to a peer that has
				// stopped answering, so that its teardown waits.
				sp.bgp.mu.Lock()
				fb := sp.bgp.bgp
				sp.bgp.mu.Unlock()
				var rs []Route
				for i := range c.ASN {
					rs = append(rs, Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)}), 32), NextHop: node.Addresses[0]})
				}
				err = fb.SetRoutes(rs)
			case "speakerstatus":
				reply.Status = sp.status().Peers
			case "teardown":
				reply.Readyz = teardownWatchingReadyz(ctx, sp, api.URL, node)
			case "stop":
				b.Stop(ctx)
				_ = out.Encode(reply)
				return
			}
			if err != nil {
				reply.Error = err.Error()
			}
		}
		_ = out.Encode(reply)
	}
}

// teardownWatchingReadyz takes the speaker out of spine mode, which tears
// its BGP speaker down, while /readyz is asked every 50 ms, as Pebble's
// check does (more often).
func teardownWatchingReadyz(ctx context.Context, sp *Speaker, url string, node Node) *readyzReport {
	rep := &readyzReport{}
	stop := make(chan struct{})
	done := make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			resp, err := client.Get(url + "/readyz")
			took := time.Since(start)
			rep.Polls++
			rep.Slowest = max(rep.Slowest, took)
			if err != nil || resp.StatusCode != http.StatusOK {
				rep.Failed++
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	sp.mu.Lock()
	l2 := *sp.cfg
	l2.Mode = config.ModeL2
	sp.cfg = &l2
	sp.mu.Unlock()
	start := time.Now()
	sp.pass(ctx, world{node: node})
	rep.TeardownIn = time.Since(start)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	return rep
}

type child struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *json.Decoder
	log string
}

func startChild(t *testing.T, bed *netns.Bed, ns string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "speaker.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, in: in, out: json.NewDecoder(stdout), log: logPath}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("speaker log:\n%s", b)
		}
	})
	return c
}

func (c *child) do(cmd command) command {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := fmt.Fprintf(c.in, "%s\n", b); err != nil {
		c.t.Fatalf("speaker child: %v", err)
	}
	var reply command
	if err := c.out.Decode(&reply); err != nil {
		c.t.Fatalf("speaker child (%s): %v", cmd.Op, err)
	}
	if reply.Error != "" {
		c.t.Fatalf("speaker child %s: %s", cmd.Op, reply.Error)
	}
	return reply
}

// spineBed is a spine router (FRR, AS 64500) and one node, on 10.211.1.0/24
// and fd11::/64.
type spineBed struct {
	bed        *netns.Bed
	spine      string
	node       string
	frr        *netns.FRR
	nodeAddr   netip.Addr
	spineAddr  netip.Addr
	spineAddr6 netip.Addr
}

func newSpineBed(t *testing.T, frrExtra string, bfd bool) *spineBed {
	t.Helper()
	bed := netns.NewT(t)
	s := &spineBed{bed: bed, nodeAddr: netip.MustParseAddr("10.211.1.2"), spineAddr: netip.MustParseAddr("10.211.1.1"), spineAddr6: netip.MustParseAddr("fd11::1")}
	var err error
	if s.spine, err = bed.NS("spine"); err != nil {
		t.Fatal(err)
	}
	if s.node, err = bed.NS("node"); err != nil {
		t.Fatal(err)
	}
	if err := bed.Link(s.spine, "to-node", []string{"10.211.1.1/24", "fd11::1/64"}, s.node, "eth0", []string{"10.211.1.2/24", "fd11::2/64"}); err != nil {
		t.Fatal(err)
	}
	conf := `frr defaults traditional
!
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 exit
exit
!
router bgp 64500
 bgp router-id 10.211.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.211.1.2 remote-as 64512
 neighbor 10.211.1.2 passive
 neighbor fd11::2 remote-as 64512
 neighbor fd11::2 passive
` + frrExtra + `
 address-family ipv6 unicast
  neighbor fd11::2 activate
 exit-address-family
exit
`
	if !bfd {
		conf = strings.Replace(conf, conf[strings.Index(conf, "bfd\n profile"):strings.Index(conf, "router bgp")], "", 1)
	}
	if s.frr, err = bed.StartFRR(s.spine, bfd, conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FRR log:\n%s", s.frr.Log())
		}
	})
	return s
}

func (s *spineBed) waitRoute(t *testing.T, prefix string, present bool, limit time.Duration) time.Duration {
	t.Helper()
	took, err := netns.WaitFor(context.Background(), limit, func() bool { return (len(s.frr.Routes(prefix)) > 0) == present })
	if err != nil {
		t.Fatalf("route %s present=%v: %v; routes now %v", prefix, present, err, s.frr.Routes(prefix))
	}
	return took
}

// established returns how many times FRR brought the session up.
func (s *spineBed) established(t *testing.T, peer string) int {
	t.Helper()
	out, err := s.frr.Vtysh("-c", "show bgp neighbors "+peer+" json")
	if err != nil {
		t.Fatalf("vtysh: %v %s", err, out)
	}
	var m map[string]json.RawMessage
	var n struct {
		Count int `json:"connectionsEstablished"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil || json.Unmarshal(m[peer], &n) != nil {
		t.Fatalf("show bgp neighbors %s: %v: %s", peer, err, out)
	}
	return n.Count
}

func peerCfg(addr string, mod ...func(*config.Peer)) Peer {
	p := config.Peer{Address: netip.MustParseAddr(addr), ASNumber: 64500, HoldTime: 9, Keepalive: 3, BFDInterval: 100, BFDMultiplier: 3}
	for _, m := range mod {
		m(&p)
	}
	return Peer{Peer: p}
}

func TestBGPAnnounceWithdrawAndReload(t *testing.T) {
	s := newSpineBed(t, "", false)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.211.1.1"), peerCfg("fd11::1")}})
	routes := []Route{
		{Prefix: netip.MustParsePrefix("10.211.100.5/32"), NextHop: s.nodeAddr, Communities: []config.Community{config.MustCommunity("65000:100"), config.MustCommunity("no-export"), config.MustCommunity("4200000000:1:2")}},
		{Prefix: netip.MustParsePrefix("fd11:100::5/128"), NextHop: netip.MustParseAddr("fd11::2")},
	}
	start := time.Now()
	sp.do(command{Op: "routes", Routes: routes})
	s.waitRoute(t, "10.211.100.5", true, 15*time.Second)
	t.Logf("first route at the spine %s after announcing (session set-up included)", time.Since(start).Round(time.Millisecond))
	s.waitRoute(t, "fd11:100::5", true, 15*time.Second)
	if hops := s.frr.Routes("10.211.100.5"); len(hops) != 1 || hops[0] != "10.211.1.2" {
		t.Fatalf("next hops %v, want the node", hops)
	}
	out, _ := s.frr.Vtysh("-c", "show ip bgp 10.211.100.5/32 json")
	if !strings.Contains(out, "65000:100") || !strings.Contains(out, "noExport") || !strings.Contains(out, "4200000000:1:2") {
		t.Fatalf("communities not received: %s", out)
	}

	// Withdraw one route; the other stays.
	sp.do(command{Op: "routes", Routes: routes[1:]})
	t.Logf("withdrawn at the spine after %s", s.waitRoute(t, "10.211.100.5", false, 5*time.Second))
	s.waitRoute(t, "fd11:100::5", true, time.Second)

	// The journal has the session coming up and the route's announce and
	// withdraw, in that order.
	var kinds []string
	for _, ev := range sp.do(command{Op: "journal", IP: netip.MustParseAddr("10.211.100.5")}).Journal.Events {
		if ev.Kind == "session" && ev.Subject == "10.211.1.1" && ev.Detail == "established" || ev.Kind != "session" {
			kinds = append(kinds, ev.Kind)
		}
	}
	if !slices.Equal(kinds, []string{"started", "session", "announce", "withdraw"}) && !slices.Equal(kinds, []string{"started", "announce", "session", "withdraw"}) {
		t.Fatalf("journal: %v", kinds)
	}

	// Reload with an extra, unrelated peer: the existing session stays up.
	before := s.established(t, "10.211.1.2")
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.211.1.1"), peerCfg("fd11::1"), peerCfg("10.211.1.99")}})
	sp.do(command{Op: "routes", Routes: routes})
	s.waitRoute(t, "10.211.100.5", true, 5*time.Second)
	time.Sleep(2 * time.Second)
	if after := s.established(t, "10.211.1.2"); after != before {
		t.Fatalf("an unrelated peer change reset the session: established %d -> %d times", before, after)
	}

	// A clean stop withdraws everything at once (Cease NOTIFICATION).
	stopAt := time.Now()
	sp.do(command{Op: "stop"})
	s.waitRoute(t, "10.211.100.5", false, 5*time.Second)
	t.Logf("graceful stop: route gone at the spine %s after the stop began", time.Since(stopAt).Round(time.Millisecond))
}

func TestBGPKillWithdraws(t *testing.T) {
	s := newSpineBed(t, "", false)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.211.1.1")}})
	sp.do(command{Op: "routes", Routes: []Route{{Prefix: netip.MustParsePrefix("10.211.100.7/32"), NextHop: s.nodeAddr}}})
	s.waitRoute(t, "10.211.100.7", true, 15*time.Second)
	_ = sp.cmd.Process.Signal(syscall.SIGKILL)
	t.Logf("SIGKILL: route gone at the spine after %s (the kernel closes the TCP session)", s.waitRoute(t, "10.211.100.7", false, 5*time.Second))
}

func TestBGPPassword(t *testing.T) {
	s := newSpineBed(t, " neighbor 10.211.1.2 password s3cret-Pa55\n", false)
	good := startChild(t, s.bed, s.node)
	good.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	p := peerCfg("10.211.1.1")
	p.Password = "wr0ng-pass"
	good.do(command{Op: "peers", Peers: []Peer{p}})
	good.do(command{Op: "routes", Routes: []Route{{Prefix: netip.MustParsePrefix("10.211.100.9/32"), NextHop: s.nodeAddr}}})
	time.Sleep(6 * time.Second)
	if s.established(t, "10.211.1.2") != 0 || len(s.frr.Routes("10.211.100.9")) != 0 {
		t.Fatal("a wrong MD5 password established a session")
	}
	p.Password = "s3cret-Pa55"
	good.do(command{Op: "peers", Peers: []Peer{p}})
	s.waitRoute(t, "10.211.100.9", true, 15*time.Second)
	good.do(command{Op: "stop"})
	b, _ := os.ReadFile(good.log)
	for _, secret := range []string{"s3cret-Pa55", "wr0ng-pass"} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("the speaker log contains the password %q", secret)
		}
	}
}

func TestBGPBFD(t *testing.T) {
	s := newSpineBed(t, " neighbor 10.211.1.2 bfd\n neighbor 10.211.1.2 bfd profile fast\n", true)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	p := peerCfg("10.211.1.1", func(p *config.Peer) { p.BFD = true; p.HoldTime, p.Keepalive = 90, 30 })
	sp.do(command{Op: "peers", Peers: []Peer{p}})
	sp.do(command{Op: "routes", Routes: []Route{{Prefix: netip.MustParsePrefix("10.211.100.5/32"), NextHop: s.nodeAddr}}})
	s.waitRoute(t, "10.211.100.5", true, 15*time.Second)
	// BFD comes up after BGP without a flap: one session, still the first.
	if _, err := netns.WaitFor(context.Background(), 10*time.Second, func() bool {
		out, _ := s.frr.Vtysh("-c", "show bfd peers brief")
		return strings.Contains(out, "10.211.1.2") && strings.Contains(out, "up")
	}); err != nil {
		out, _ := s.frr.Vtysh("-c", "show bfd peers brief")
		t.Fatalf("BFD never came up: %s", out)
	}
	time.Sleep(time.Second)
	if n := s.established(t, "10.211.1.2"); n != 1 {
		t.Fatalf("BFD start-up flapped the session: established %d times", n)
	}
	// Black-hole the node: with BFD 100 ms x 3 the route goes well under a
	// second, though the hold time is 90 s.
	if err := s.bed.Blackhole(s.node, "10.211.1.1"); err != nil {
		t.Fatal(err)
	}
	took := s.waitRoute(t, "10.211.100.5", false, 5*time.Second)
	t.Logf("black-holed node: route gone at the spine after %s (BFD 100 ms x 3, hold 90 s)", took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("BFD failover took %s", took)
	}
	// Recovery: one new session, and no stale NOTIFICATION killing it.
	time.Sleep(time.Second)
	if err := s.bed.Unblackhole(s.node); err != nil {
		t.Fatal(err)
	}
	back := s.waitRoute(t, "10.211.100.5", true, 20*time.Second)
	t.Logf("recovery: route back %s after the black hole was lifted", back.Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	if n := s.established(t, "10.211.1.2"); n != 2 {
		t.Fatalf("after one outage the session was established %d times, want 2 (an extra flap reached the router)", n)
	}
	if len(s.frr.Routes("10.211.100.5")) == 0 {
		t.Fatal("route lost again after recovery")
	}
}

// Quick flaps, again and again: each time the router resets the session
// (Established -> Idle -> Established), BFD follows the session, and the
// router sees exactly one new session per reset, never an extra flap from a
// stale BFD switch.
func TestBGPBFDFollowsFlaps(t *testing.T) {
	s := newSpineBed(t, " neighbor 10.211.1.2 bfd\n neighbor 10.211.1.2 bfd profile fast\n", true)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	p := peerCfg("10.211.1.1", func(p *config.Peer) { p.BFD = true })
	sp.do(command{Op: "peers", Peers: []Peer{p}})
	bfdUp := func() bool {
		out, _ := s.frr.Vtysh("-c", "show bfd peers brief")
		return strings.Contains(out, "10.211.1.2") && strings.Contains(out, " up ")
	}
	ours := func() PeerStatus {
		st := sp.do(command{Op: "status"}).Status
		if len(st) != 1 {
			t.Fatalf("speaker has %d peers", len(st))
		}
		return st[0]
	}
	settled := func(round int) {
		t.Helper()
		if _, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool {
			o := ours()
			return o.State == "established" && o.BFD && bfdUp()
		}); err != nil {
			out, _ := s.frr.Vtysh("-c", "show bfd peers brief")
			t.Fatalf("round %d: session and BFD never both up: ours %+v; router's BFD: %s", round, ours(), out)
		}
	}
	settled(0)
	const flaps = 10
	for i := 1; i <= flaps; i++ {
		before := s.established(t, "10.211.1.2")
		if out, err := s.frr.Vtysh("-c", "clear bgp 10.211.1.2"); err != nil {
			t.Fatalf("clear bgp: %v %s", err, out)
		}
		if _, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool { return s.established(t, "10.211.1.2") > before }); err != nil {
			t.Fatalf("round %d: the session did not come back", i)
		}
		settled(i)
	}
	time.Sleep(2 * time.Second) // a stale switch would reset the session now
	if n := s.established(t, "10.211.1.2"); n != flaps+1 {
		t.Fatalf("%d resets gave %d sessions, want %d: an extra flap reached the router", flaps, n, flaps+1)
	}
	if o := ours(); o.State != "established" || !o.BFD || !bfdUp() {
		t.Fatalf("after the flaps: ours %+v, router's BFD up %v", o, bfdUp())
	}
}

// Readiness never waits on BGP: while the speaker tears down a session
// to a peer that has stopped answering (black-holed, with 50,000 routes
// queued to it, so that GoBGP's Cease waits out its one-second write
// deadline), /readyz, asked every 50 ms, answers each time within 100 ms.
// Were it held up, Pebble's check would restart the speaker and withdraw
// every route. It answered after 950 ms while the lock was held.
func TestReadyzDuringTeardown(t *testing.T) {
	s := newSpineBed(t, "", false)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "speaker", SpinePeers: "[{address: 10.211.1.1, as-number: 64500, hold-time: 9, keepalive: 3}]"})
	if _, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool {
		st := sp.do(command{Op: "speakerstatus"}).Status
		return len(st) == 1 && st[0].State == "established"
	}); err != nil {
		t.Fatalf("no session: %+v", sp.do(command{Op: "speakerstatus"}).Status)
	}
	if err := s.bed.Blackhole(s.node, "10.211.1.1"); err != nil {
		t.Fatal(err)
	}
	sp.do(command{Op: "flood", ASN: 50000})
	time.Sleep(2 * time.Second)
	rep := sp.do(command{Op: "teardown"}).Readyz
	t.Logf("teardown took %s; /readyz asked %d times, slowest answer %s, %d not ok", rep.TeardownIn.Round(time.Millisecond), rep.Polls, rep.Slowest.Round(time.Microsecond), rep.Failed)
	if rep.Polls < 4 || rep.Failed > 0 || rep.Slowest > 100*time.Millisecond {
		t.Fatalf("/readyz during the teardown: %+v", rep)
	}
}

// The speakers announce and never route: a spine that sends routes (a
// full table, say) fills nothing, since every received path is rejected
// on import; the speaker's own routes still reach the spine.
func TestBGPRejectsReceivedRoutes(t *testing.T) {
	s := newSpineBed(t, " address-family ipv4 unicast\n  network 10.211.200.0/24\n  network 10.211.201.0/24\n  neighbor 10.211.1.2 activate\n exit-address-family\n", false)
	// (The bed's FRR has no bgp network import-check: it advertises these
	// networks without routes to them.)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.211.1.1")}})
	sp.do(command{Op: "routes", Routes: []Route{{Prefix: netip.MustParsePrefix("10.211.100.9/32"), NextHop: s.nodeAddr}}})
	s.waitRoute(t, "10.211.100.9", true, 15*time.Second)
	// The spine has sent its two networks by now (it advertises as the
	// session comes up); give it a moment more.
	if _, err := netns.WaitFor(context.Background(), 5*time.Second, func() bool {
		out, _ := s.frr.Vtysh("-c", "show bgp ipv4 unicast neighbors 10.211.1.2 advertised-routes")
		return strings.Contains(out, "10.211.200.0/24") && strings.Contains(out, "10.211.201.0/24")
	}); err != nil {
		out, _ := s.frr.Vtysh("-c", "show bgp ipv4 unicast neighbors 10.211.1.2 advertised-routes")
		t.Fatalf("the spine never advertised its networks: %s", out)
	}
	time.Sleep(time.Second)
	if n := sp.do(command{Op: "received"}).ASN; n != 0 {
		t.Fatalf("the speaker's RIB holds %d paths from the spine, want none", n)
	}
}

// A spine that sends more routes than max-prefixes (a full table, say) has
// its session closed before the speaker keeps them all; the speaker says
// why in its status, and dials again by itself once the router is fixed.
func TestBGPPrefixLimit(t *testing.T) {
	var nets strings.Builder
	for i := range 12 {
		fmt.Fprintf(&nets, "  network 10.212.%d.0/24\n", i)
	}
	s := newSpineBed(t, " address-family ipv4 unicast\n"+nets.String()+"  neighbor 10.211.1.2 activate\n exit-address-family\n", false)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	sp.do(command{Op: "limitretry", ASN: 3000})
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.211.1.1", func(p *config.Peer) { p.MaxPrefixes = 10 })}})
	sp.do(command{Op: "routes", Routes: []Route{{Prefix: netip.MustParsePrefix("10.211.100.9/32"), NextHop: s.nodeAddr}}})
	var st []PeerStatus
	if _, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool {
		st = sp.do(command{Op: "status"}).Status
		return len(st) == 1 && st[0].Problem != ""
	}); err != nil {
		t.Fatalf("the session was never closed over its prefix limit: status %+v, %d paths kept from the spine", st, sp.do(command{Op: "adjin"}).ASN)
	}
	if st[0].State == "established" || !strings.Contains(st[0].Problem, "max-prefixes 10") || !strings.Contains(st[0].Problem, "filter them on the router") {
		t.Fatalf("status %+v", st[0])
	}
	if n := sp.do(command{Op: "adjin"}).ASN; n != 0 {
		t.Fatalf("the closed session left %d paths in the speaker", n)
	}
	// Closed, the session takes the speaker's route with it; the retry
	// closes it again while the spine still sends too much.
	s.waitRoute(t, "10.211.100.9", false, 10*time.Second)
	for _, closed := range []bool{false, true} {
		if _, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool {
			st = sp.do(command{Op: "status"}).Status
			return (st[0].Problem != "") == closed
		}); err != nil {
			t.Fatalf("waiting for the retry to dial (closed=%v): %+v", closed, st[0])
		}
	}
	// The router is fixed: it sends none. The speaker dials again by
	// itself, and its route is back on the spine.
	args := []string{"-c", "configure terminal", "-c", "router bgp 64500", "-c", "address-family ipv4 unicast"}
	for i := range 12 {
		args = append(args, "-c", fmt.Sprintf("no network 10.212.%d.0/24", i))
	}
	if out, err := s.frr.Vtysh(args...); err != nil {
		t.Fatalf("vtysh: %v\n%s", err, out)
	}
	took, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool {
		st = sp.do(command{Op: "status"}).Status
		return st[0].State == "established" && st[0].Problem == ""
	})
	if err != nil {
		t.Fatalf("the session never came back after the router was fixed: %+v", st[0])
	}
	t.Logf("session back %s after the router was fixed (retry after 3 s)", took.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if st = sp.do(command{Op: "status"}).Status; st[0].Problem != "" || st[0].State != "established" {
		t.Fatalf("closed again: %+v", st[0])
	}
	s.waitRoute(t, "10.211.100.9", true, 10*time.Second)
}

func TestBGPHoldTime(t *testing.T) {
	s := newSpineBed(t, "", false)
	sp := startChild(t, s.bed, s.node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: s.nodeAddr})
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.211.1.1", func(p *config.Peer) { p.HoldTime, p.Keepalive = 3, 1 })}})
	sp.do(command{Op: "routes", Routes: []Route{{Prefix: netip.MustParsePrefix("10.211.100.5/32"), NextHop: s.nodeAddr}}})
	s.waitRoute(t, "10.211.100.5", true, 15*time.Second)
	// A silent node (the process alive, its network dead) is only noticed
	// when the hold time runs out.
	if err := s.bed.Blackhole(s.node, "10.211.1.1"); err != nil {
		t.Fatal(err)
	}
	took := s.waitRoute(t, "10.211.100.5", false, 10*time.Second)
	t.Logf("black-holed node without BFD: route gone after %s (hold time 3 s)", took.Round(time.Millisecond))
	if took < time.Second {
		t.Fatalf("gone after %s: faster than a 3 s hold time can explain", took)
	}
}

// TestBGPBIRD is the announce test with BIRD 2 as the router.
func TestBGPBIRD(t *testing.T) {
	bed := netns.NewT(t)
	spine, err := bed.NS("spine")
	if err != nil {
		t.Fatal(err)
	}
	node, err := bed.NS("node")
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.Link(spine, "to-node", []string{"10.213.1.1/24"}, node, "eth0", []string{"10.213.1.2/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bed.StartBIRD(spine, `router id 10.213.0.1;
protocol device {}
protocol kernel { ipv4 { export all; }; merge paths on; }
protocol bgp nodes {
  local as 64500;
  neighbor 10.213.1.2 as 64512;
  passive on;
  ipv4 { import all; export none; };
}
`); err != nil {
		t.Fatal(err)
	}
	sp := startChild(t, bed, node)
	sp.do(command{Op: "start", ASN: 64512, RouterID: netip.MustParseAddr("10.213.1.2")})
	sp.do(command{Op: "peers", Peers: []Peer{peerCfg("10.213.1.1")}})
	route := Route{Prefix: netip.MustParsePrefix("10.213.100.5/32"), NextHop: netip.MustParseAddr("10.213.1.2")}
	sp.do(command{Op: "routes", Routes: []Route{route}})
	present := func(want bool) time.Duration {
		took, err := netns.WaitFor(context.Background(), 15*time.Second, func() bool { return (len(netns.Routes(spine, "10.213.100.5")) > 0) == want })
		if err != nil {
			t.Fatalf("BIRD route present=%v: %v", want, err)
		}
		return took
	}
	present(true)
	if hops := netns.Routes(spine, "10.213.100.5"); len(hops) != 1 || hops[0] != "10.213.1.2" {
		t.Fatalf("BIRD next hops %v", hops)
	}
	sp.do(command{Op: "routes"})
	t.Logf("BIRD: withdrawn after %s", present(false).Round(time.Millisecond))
	sp.do(command{Op: "routes", Routes: []Route{route}})
	present(true)
	sp.do(command{Op: "stop"})
	t.Logf("BIRD: graceful stop, route gone after %s", present(false).Round(time.Millisecond))
}
