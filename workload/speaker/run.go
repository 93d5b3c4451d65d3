package speaker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Options configure a Speaker.
type Options struct {
	Client     kubernetes.Interface
	NodeName   string
	ConfigPath string
	ConfigPoll time.Duration // default 1 s
	Log        *slog.Logger
	// L2Port is the UDP port of the L2 liveness heartbeats (default 7947).
	L2Port int
	// HoldDown is how long a returning speaker must be alive before it
	// takes IPs back (default 3 s).
	HoldDown time.Duration
}

// Speaker announces the LoadBalancer IPs its node serves.
type Speaker struct {
	opts    Options
	log     *slog.Logger
	trigger chan struct{}

	mu      sync.Mutex
	cfg     *config.Config
	cfgErr  string
	synced  bool
	node    *Node
	bgp     *BGP
	bgpKey  string // AS and router ID the running BGP speaker was started with
	routes  []Route
	peerErr string

	reg     *prometheus.Registry
	updates prometheus.Counter

	live  *Liveness
	resp  *Responder
	l2err string

	l2Members map[string]bool // live speakers at the last L2 decision; Run's goroutine only
}

// NewSpeaker returns a Speaker; Run starts it.
func NewSpeaker(opts Options) *Speaker {
	if opts.ConfigPoll == 0 {
		opts.ConfigPoll = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.L2Port == 0 {
		opts.L2Port = DefaultL2Port
	}
	if opts.HoldDown == 0 {
		opts.HoldDown = 3 * time.Second
	}
	s := &Speaker{opts: opts, log: opts.Log, trigger: make(chan struct{}, 1), reg: prometheus.NewRegistry()}
	s.updates = prometheus.NewCounter(prometheus.CounterOpts{Name: "calico_lb_bgp_route_updates_total", Help: "Route sets applied to the BGP speaker."})
	s.reg.MustRegister(s.updates, &bgpCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

func (s *Speaker) kick() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run runs until ctx ends, then withdraws every route before returning.
func (s *Speaker) Run(ctx context.Context) error {
	all := informers.NewSharedInformerFactory(s.opts.Client, 0)
	svcs := all.Core().V1().Services()
	eps := all.Discovery().V1().EndpointSlices()
	// All Nodes: L2 mode needs the other speakers' addresses and labels.
	nodes := all.Core().V1().Nodes()
	h := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { s.kick() }, UpdateFunc: func(_, _ any) { s.kick() }, DeleteFunc: func(any) { s.kick() }}
	for _, inf := range []cache.SharedIndexInformer{svcs.Informer(), eps.Informer(), nodes.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	if err := eps.Informer().AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		es := obj.(*discoveryv1.EndpointSlice)
		return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
	}}); err != nil {
		return err
	}
	all.Start(ctx.Done())
	go s.watchFiles(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), svcs.Informer().HasSynced, eps.Informer().HasSynced, nodes.Informer().HasSynced) {
		return ctx.Err()
	}
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
	s.log.Info("speaker caches synced", "node", s.opts.NodeName)
	endpoints := func(ns, name string) []*discoveryv1.EndpointSlice {
		objs, _ := eps.Informer().GetIndexer().ByIndex("service", ns+"/"+name)
		out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			out = append(out, o.(*discoveryv1.EndpointSlice))
		}
		return out
	}
	s.kick()
	// Decide again exactly when a waiting speaker becomes eligible, so that
	// every speaker switches at the same instant.
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		var liveChanged <-chan struct{}
		if s.live != nil {
			liveChanged = s.live.Changed()
		}
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-s.trigger:
		case <-liveChanged:
		case <-wake.C:
		}
		n, err := nodes.Lister().Get(s.opts.NodeName)
		if err != nil {
			s.log.Warn("own node not found", "node", s.opts.NodeName, "error", err)
			continue
		}
		node := NodeFrom(n)
		list, _ := svcs.Lister().List(labels.Everything())
		s.reconcile(ctx, node, list, endpoints)
		allNodes, _ := nodes.Lister().List(labels.Everything())
		s.reconcileL2(ctx, node, allNodes, list, endpoints)
		next := time.Hour
		if s.live != nil {
			now := time.Now()
			at := NextEligible(s.live.Members(now), now, s.opts.HoldDown)
			if ok, until := s.live.Settled(now); !ok {
				at = until
			}
			if !at.IsZero() {
				next = max(time.Until(at), time.Millisecond)
			}
		}
		wake.Reset(next)
	}
}

// reconcileL2 answers ARP/NDP for the IPs this node owns in l2 mode.
func (s *Speaker) reconcileL2(ctx context.Context, node Node, allNodes []*corev1.Node, services []*corev1.Service, endpoints EndpointsOf) {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	if cfg == nil {
		return
	}
	selected, _ := Selected(cfg, node)
	if cfg.Mode != config.ModeL2 || !selected {
		if s.resp != nil {
			s.resp.SetOwned(ctx, nil)
		}
		return
	}
	if s.live == nil {
		live, err := StartLiveness(ctx, s.opts.NodeName, s.opts.L2Port, DefaultHeartbeat, DefaultTimeout)
		if err != nil {
			s.setL2Err(err)
			return
		}
		s.mu.Lock()
		s.live = live
		s.mu.Unlock()
	}
	if s.resp == nil {
		ifaces := cfg.L2.Interfaces
		if len(ifaces) == 0 {
			ifaces = interfacesOf(node)
		}
		resp, err := StartResponder(ctx, ifaces, s.log)
		if err != nil {
			s.setL2Err(err)
			return
		}
		s.mu.Lock()
		s.resp = resp
		s.mu.Unlock()
		s.log.Info("L2 responder started", "interfaces", ifaces)
	}
	nodes := map[string]Node{}
	peers := map[string]netip.AddrPort{}
	for _, n := range allNodes {
		nd := NodeFrom(n)
		nodes[nd.Name] = nd
		if ok, _ := Selected(cfg, nd); ok {
			if a := routerID(nd); a.IsValid() {
				peers[nd.Name] = netip.AddrPortFrom(a, uint16(s.opts.L2Port))
			}
		}
	}
	s.live.SetPeers(peers)
	if ok, _ := s.live.Settled(time.Now()); !ok {
		s.resp.SetOwned(ctx, nil)
		s.l2Members = nil
		return
	}
	members := s.live.Members(time.Now())
	owned, err := L2Owners(cfg, s.opts.NodeName, members, nodes, services, endpoints, time.Now(), s.opts.HoldDown)
	if err != nil {
		s.setL2Err(err)
		return
	}
	s.setL2Err(nil)
	s.resp.SetOwned(ctx, owned)
	// After a partition neighbours may have learned our stand-ins' MACs:
	// say again which IPs are ours when a speaker (re)appears, or when a
	// peer tells us it had given us up (after a short flap only one side
	// may have noticed).
	joined := false
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		seen[m.Node] = true
		if s.l2Members != nil && !s.l2Members[m.Node] {
			joined = true
		}
	}
	if given := s.live.TakeGivenUp(); joined || given {
		s.resp.Reannounce(ctx)
	}
	s.l2Members = seen
}

func (s *Speaker) setL2Err(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.l2err = ""
		return
	}
	if s.l2err != err.Error() {
		s.log.Error("L2", "error", err)
	}
	s.l2err = err.Error()
}

// interfacesOf returns the interfaces that hold one of the node's addresses.
func interfacesOf(node Node) []string {
	ifs, _ := net.Interfaces()
	var out []string
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && slices.Contains(node.Addresses, p.Addr()) {
				out = append(out, ifi.Name)
				break
			}
		}
	}
	return out
}

// reconcile brings the BGP speaker in line with the config, the node and
// the Services.
func (s *Speaker) reconcile(ctx context.Context, node Node, services []*corev1.Service, endpoints EndpointsOf) {
	s.mu.Lock()
	cfg := s.cfg
	s.node = &node
	s.mu.Unlock()
	if cfg == nil {
		return
	}
	selected, err := Selected(cfg, node)
	if err != nil || cfg.Mode != config.ModeSpine || !selected {
		s.stopBGP(ctx, "this node does not announce in the current config")
		return
	}
	routes, err := Announcements(cfg, node, services, endpoints)
	if err != nil {
		s.log.Error("cannot compute announcements", "error", err)
		return
	}
	asn, rid := asFor(cfg, node), routerID(node)
	if !rid.IsValid() {
		s.log.Error("node has no IPv4 InternalIP for a router ID", "node", node.Name)
		return
	}
	key := fmt.Sprintf("%d/%s", asn, rid)
	// Only this goroutine changes the BGP speaker; the lock guards the
	// fields that /readyz, /v1/bgp and the metrics read, and is never held
	// across a call into GoBGP: a teardown that waits on a peer that no
	// longer answers must not hold up readiness, which Pebble would answer
	// with a restart that withdraws every route.
	s.mu.Lock()
	b, running, announced := s.bgp, s.bgpKey, s.routes
	s.mu.Unlock()
	if b != nil && running != key {
		s.stopBGP(ctx, "its AS or router ID changes")
		b, announced = nil, nil
	}
	if b == nil {
		nb, err := StartBGP(ctx, asn, rid, s.log)
		if err != nil {
			s.log.Error("start BGP", "error", err)
			return
		}
		b = nb
		s.mu.Lock()
		s.bgp, s.bgpKey = b, key
		s.mu.Unlock()
		s.log.Info("BGP speaker started", "as", asn, "router-id", rid)
	}
	peers, perr := peersFor(cfg, node, asn)
	peerErr := ""
	if perr != nil {
		peerErr = perr.Error()
		s.log.Error("peers", "error", perr)
	}
	s.mu.Lock()
	s.peerErr = peerErr
	s.mu.Unlock()
	if err := b.SetPeers(ctx, peers); err != nil {
		s.log.Error("set peers", "error", err)
	}
	if !slices.EqualFunc(routes, announced, func(a, b Route) bool { return sameRoute(a, b) }) {
		if err := b.SetRoutes(routes); err != nil {
			s.log.Error("set routes", "error", err)
			return
		}
		s.mu.Lock()
		s.routes = routes
		s.mu.Unlock()
		s.updates.Inc()
		s.log.Info("routes", "count", len(routes))
	}
}

// stopBGP stops the BGP speaker, if one runs. Readers see it gone at once;
// the teardown (a Cease to each peer) happens outside the lock.
func (s *Speaker) stopBGP(ctx context.Context, why string) {
	s.mu.Lock()
	b := s.bgp
	s.bgp, s.bgpKey, s.routes = nil, "", nil
	s.mu.Unlock()
	if b != nil {
		b.Stop(ctx)
		s.log.Info("BGP speaker stopped: " + why)
	}
}

// shutdown withdraws everything: a Cease to every peer drops our routes at once.
func (s *Speaker) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.stopBGP(ctx, "the speaker is shutting down")
}

// asFor is the node's AS: subnet-as-numbers (longest match) or as-number.
func asFor(cfg *config.Config, node Node) uint32 {
	best, bits := cfg.BGP.ASNumber, -1
	for _, sa := range cfg.BGP.SubnetASNumbers {
		for _, a := range node.Addresses {
			if sa.Subnet.Contains(a) && sa.Subnet.Bits() > bits {
				best, bits = sa.ASNumber, sa.Subnet.Bits()
			}
		}
	}
	return best
}

func routerID(node Node) netip.Addr {
	for _, a := range node.Addresses {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// peersFor is the global spine peers plus those of the node's subnets (a
// subnet peer replaces a global one with the same address), with passwords
// from the password file.
func peersFor(cfg *config.Config, node Node, asn uint32) ([]Peer, error) {
	byAddr := map[netip.Addr]config.Peer{}
	for _, p := range cfg.BGP.Peers {
		byAddr[p.Address] = p
	}
	for _, sp := range cfg.BGP.SubnetPeers {
		for _, a := range node.Addresses {
			if sp.Subnet.Contains(a) {
				for _, p := range sp.Peers {
					byAddr[p.Address] = p
				}
			}
		}
	}
	var passwords map[string]string
	var missing []string
	out := make([]Peer, 0, len(byAddr))
	for _, p := range byAddr {
		peer := Peer{Peer: p, LocalAS: asn}
		if p.PasswordKey != "" {
			if passwords == nil {
				var err error
				if passwords, err = readPasswords(cfg.BGP.PasswordFile); err != nil {
					return nil, err
				}
			}
			pw, ok := passwords[p.PasswordKey]
			if !ok {
				missing = append(missing, fmt.Sprintf("%s (key %q)", p.Address, p.PasswordKey))
				continue
			}
			peer.Password = pw
		}
		out = append(out, peer)
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	if len(missing) > 0 {
		return out, fmt.Errorf("no password in %s for peers %v; they are not dialled", cfg.BGP.PasswordFile, missing)
	}
	return out, nil
}

// readPasswords reads the YAML mapping password-key -> password that the
// charm renders from the bgp-passwords secret.
func readPasswords(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	var m map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("password file %s is not a YAML mapping of key to password", path)
	}
	return m, nil
}

// watchFiles reloads the config (and, through reconcile, the password
// file) when either changes.
func (s *Speaker) watchFiles(ctx context.Context) {
	var lastCfg, lastPw []byte
	tick := time.NewTicker(s.opts.ConfigPoll)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		data, err := os.ReadFile(s.opts.ConfigPath)
		var pw []byte
		s.mu.Lock()
		cur := s.cfg
		s.mu.Unlock()
		if cur != nil {
			pw, _ = os.ReadFile(cur.BGP.PasswordFile)
		}
		if err == nil && bytes.Equal(data, lastCfg) && bytes.Equal(pw, lastPw) {
			continue
		}
		lastCfg, lastPw = data, pw
		cfg, perr := config.Parse(data)
		s.mu.Lock()
		switch {
		case err != nil:
			s.cfgErr = err.Error()
		case perr != nil:
			s.cfgErr = perr.Error()
			s.log.Error("config rejected; keeping the last good one", "error", perr)
		default:
			s.cfgErr = ""
			if !reflect.DeepEqual(cfg, s.cfg) {
				s.log.Info("config loaded", "mode", cfg.Mode, "peers", len(cfg.BGP.Peers))
			}
			s.cfg = cfg
		}
		s.mu.Unlock()
		s.kick()
	}
}

func (s *Speaker) l2Status() L2Status {
	s.mu.Lock()
	resp, live := s.resp, s.live
	s.mu.Unlock()
	st := L2Status{Owned: []string{}, Alive: []string{}}
	if resp != nil {
		st = resp.status()
		st.Alive = []string{}
	}
	if live != nil {
		for _, m := range live.Members(time.Now()) {
			st.Alive = append(st.Alive, m.Node)
		}
	}
	return st
}

// Status is what GET /v1/bgp returns.
type Status = api.BGPStatus

func (s *Speaker) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Node: s.opts.NodeName, ASN: s.bgpKey, Peers: []PeerStatus{}, Routes: []string{}}
	if s.cfg != nil {
		st.Mode = s.cfg.Mode
	}
	if s.bgp != nil {
		st.Announces = true
		st.Peers = s.bgp.Status()
	}
	for _, r := range s.routes {
		st.Routes = append(st.Routes, r.String())
	}
	st.Error = s.cfgErr
	if st.Error == "" {
		st.Error = s.peerErr
	}
	return st
}

// Handler is the speaker's local HTTP API.
func (s *Speaker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		ok, why := s.synced && s.cfg != nil && s.node != nil, ""
		switch {
		case !s.synced:
			why = "caches not synced yet"
		case s.cfg == nil:
			why = "no valid config: " + s.cfgErr
		case s.node == nil:
			why = "own node " + s.opts.NodeName + " not seen yet"
		}
		s.mu.Unlock()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/l2", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.l2Status())
	})
	mux.HandleFunc("GET /v1/bgp", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.status())
	})
	return mux
}

var (
	sessionDesc = prometheus.NewDesc("calico_lb_bgp_session_up", "1 while the BGP session to the peer is Established.", []string{"peer"}, nil)
	routesDesc  = prometheus.NewDesc("calico_lb_bgp_routes_advertised", "Routes this speaker announces.", nil, nil)
	ownedDesc   = prometheus.NewDesc("calico_lb_l2_owned_ips", "IPs this node answers ARP/NDP for.", nil, nil)
	changesDesc = prometheus.NewDesc("calico_lb_l2_ownership_changes_total", "IPs this node took over or released.", nil, nil)
	garpsDesc   = prometheus.NewDesc("calico_lb_l2_announcements_total", "Gratuitous ARPs and unsolicited neighbour advertisements sent.", nil, nil)
)

type bgpCollector struct{ s *Speaker }

func (c *bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sessionDesc, routesDesc, ownedDesc, changesDesc, garpsDesc} {
		ch <- d
	}
}

func (c *bgpCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.status()
	for _, p := range st.Peers {
		v := 0.0
		if p.State == "established" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(sessionDesc, prometheus.GaugeValue, v, p.Address)
	}
	ch <- prometheus.MustNewConstMetric(routesDesc, prometheus.GaugeValue, float64(len(st.Routes)))
	l2 := c.s.l2Status()
	ch <- prometheus.MustNewConstMetric(ownedDesc, prometheus.GaugeValue, float64(len(l2.Owned)))
	ch <- prometheus.MustNewConstMetric(changesDesc, prometheus.CounterValue, float64(l2.Changes))
	ch <- prometheus.MustNewConstMetric(garpsDesc, prometheus.CounterValue, float64(l2.GARPs))
}
