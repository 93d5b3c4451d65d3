package speaker

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/metricnames"
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
	// L2KeyFile holds the keys of the L2 heartbeats (default
	// DefaultL2KeyFile; see ParseL2Keys).
	L2KeyFile string
	// Callers says who may use the status API's /v1/ paths (default:
	// nobody).
	Callers Callers
	// Test is the failover test's part in the speaker; nil: none (the
	// speaker cannot be failed, held or read by a test).
	Test TestHook
	// Files is where the config, passwords and keys are read
	// (default OSFiles).
	Files Files
}

// DefaultL2KeyFile is where the speaker pods have the heartbeat keys.
const DefaultL2KeyFile = "/etc/calico-lb/l2-keys"

// Speaker announces the LoadBalancer IPs its node serves, through the
// driver of the config's mode.
type Speaker struct {
	opts    Options
	log     *slog.Logger
	trigger chan struct{}

	mu     sync.Mutex // guards the fields below, for readers
	cfg    *config.Config
	cfgErr string
	synced bool
	node   *Node

	reg *prometheus.Registry
	// collectors are what reg holds.
	collectors []prometheus.Collector
	bgp        *bgpDriver
	l2         *l2Driver
	test       TestHook
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
	if opts.L2KeyFile == "" {
		opts.L2KeyFile = DefaultL2KeyFile
	}
	if opts.Callers == nil {
		opts.Callers = errNoCaller{}
	}
	if opts.Files == nil {
		opts.Files = OSFiles{}
	}
	updates := prometheus.NewCounter(prometheus.CounterOpts{Name: "calico_lb_bgp_route_updates_total", Help: "Route sets applied to the BGP speaker."})
	if opts.Test == nil {
		opts.Test = noTest{}
	}
	s := &Speaker{opts: opts, log: opts.Log, trigger: make(chan struct{}, 1), reg: prometheus.NewRegistry(), test: opts.Test,
		bgp: &bgpDriver{log: opts.Log, updates: updates, observer: opts.Test},
		l2:  &l2Driver{log: opts.Log, port: opts.L2Port, holdDown: opts.HoldDown, keyFile: opts.L2KeyFile, observer: opts.Test}}
	s.collectors = []prometheus.Collector{updates, &collector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	s.reg.MustRegister(s.collectors...)
	return s
}

// MetricNames are the names of the metrics a speaker registers (the
// dashboard and the alert rules may use only these), sorted.
func MetricNames() []string { return metricnames.Of(NewSpeaker(Options{}).collectors...) }

func (s *Speaker) drivers() []driver { return []driver{s.bgp, s.l2} }

func (s *Speaker) kick() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run runs until ctx ends, then withdraws every route before returning.
// A speaker the failover test holds down waits first, announcing nothing;
// one it stops gracefully returns ErrStopped after withdrawing.
func (s *Speaker) Run(ctx context.Context) error {
	s.opts.Files.Start(ctx)
	if s.test.WaitHold(ctx) != nil {
		return nil
	}
	c, err := s.startCaches(ctx)
	if err != nil {
		return err
	}
	s.l2.ifaceProblem = s.nodeEvents(ctx, c.nodes.Lister().Get)
	go s.watchFiles(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), c.svcs.Informer().HasSynced, c.eps.Informer().HasSynced, c.nodes.Informer().HasSynced) {
		return ctx.Err()
	}
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
	s.log.Info("speaker caches synced", "node", s.opts.NodeName)
	s.kick()
	// Decide again exactly when a waiting speaker becomes eligible, so that
	// every speaker switches at the same instant.
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-s.test.Stopped():
			s.shutdown()
			return ErrStopped
		case <-s.trigger:
		case <-s.l2.changed():
		case <-wake.C:
		}
		n, err := c.nodes.Lister().Get(s.opts.NodeName)
		if err != nil {
			s.log.Warn("own node not found", "node", s.opts.NodeName, "error", err)
			continue
		}
		w := world{node: NodeFrom(n), endpoints: c.endpoints}
		w.services, _ = c.svcs.Lister().List(labels.Everything())
		w.nodes, _ = c.nodes.Lister().List(labels.Everything())
		s.pass(ctx, w)
		next := time.Hour
		if at := s.l2.wake(time.Now()); !at.IsZero() {
			next = max(time.Until(at), time.Millisecond)
		}
		wake.Reset(next)
	}
}

// caches are the speaker's informers: what it decides from.
type caches struct {
	svcs  coreinformers.ServiceInformer
	eps   discoveryinformers.EndpointSliceInformer
	nodes coreinformers.NodeInformer
}

// endpoints are a Service's EndpointSlices.
func (c caches) endpoints(ns, name string) []*discoveryv1.EndpointSlice {
	objs, _ := c.eps.Informer().GetIndexer().ByIndex("service", ns+"/"+name)
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// startCaches starts the informers, keeping only the fields the speaker
// uses, each change a kick.
func (s *Speaker) startCaches(ctx context.Context) (caches, error) {
	all := informers.NewSharedInformerFactory(s.opts.Client, 0)
	// All Nodes: L2 mode needs the other speakers' addresses and labels.
	c := caches{svcs: all.Core().V1().Services(), eps: all.Discovery().V1().EndpointSlices(), nodes: all.Core().V1().Nodes()}
	for inf, slim := range map[cache.SharedIndexInformer]cache.TransformFunc{c.svcs.Informer(): slimService, c.eps.Informer(): slimEndpointSlice, c.nodes.Informer(): slimNode} {
		if err := inf.SetTransform(slim); err != nil {
			return c, err
		}
	}
	h := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { s.kick() }, UpdateFunc: func(_, _ any) { s.kick() }, DeleteFunc: func(any) { s.kick() }}
	for _, inf := range []cache.SharedIndexInformer{c.svcs.Informer(), c.eps.Informer(), c.nodes.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return c, err
		}
	}
	if err := c.eps.Informer().AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		es := obj.(*discoveryv1.EndpointSlice)
		return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
	}}); err != nil {
		return c, err
	}
	all.Start(ctx.Done())
	return c, nil
}

// pass runs every driver on the world with the config in force.
func (s *Speaker) pass(ctx context.Context, w world) {
	w.files = s.opts.Files
	s.mu.Lock()
	w.cfg = s.cfg
	s.node = &w.node
	s.mu.Unlock()
	if w.cfg == nil {
		return
	}
	for _, d := range s.drivers() {
		d.sync(ctx, w)
	}
}

// shutdown withdraws everything: a Cease to every BGP peer drops our
// routes at once.
func (s *Speaker) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, d := range s.drivers() {
		d.stop(ctx)
	}
}

// watchFiles reloads the config when it changes, and starts a pass when
// it or any file a pass reads (the passwords, the heartbeat keys) does. It
// is the one place that notices changes; a pass reads what it needs.
func (s *Speaker) watchFiles(ctx context.Context) {
	files := s.opts.Files
	var last [][]byte
	tick := time.NewTicker(s.opts.ConfigPoll)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			case <-files.Changed():
			}
		}
		data, err := files.ReadFile(s.opts.ConfigPath)
		s.mu.Lock()
		cur := s.cfg
		s.mu.Unlock()
		read := [][]byte{data, nil, nil}
		if cur != nil {
			read[1], _ = files.ReadFile(cur.BGP.PasswordFile)
		}
		read[2], _ = files.ReadFile(s.opts.L2KeyFile)
		if err == nil && last != nil && slices.EqualFunc(read, last, bytes.Equal) {
			continue
		}
		last = read
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
