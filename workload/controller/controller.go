// Package controller is calico-lb's Service reconciler: it gives Services of
// type LoadBalancer their IPs from the allocator and writes them to
// status.loadBalancer.ingress.
//
// One goroutine per leadership term, the allocation loop, owns the
// allocator and takes every decision in order (adoption at start, Service
// changes, config changes, API requests). A pool of writers does the slow
// API writes; a key is marked done in the work queue only when its write
// has finished, so no key is ever handled by two goroutines at once. A
// standby keeps its caches warm so that it can take over within seconds.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/speakerclient"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

// Options configure a Controller.
type Options struct {
	Client kubernetes.Interface
	// EventClient records Events; give it its own rate limit so that a
	// burst of Events never slows status writes. Defaults to Client.
	EventClient kubernetes.Interface
	ConfigPath  string
	// Identity names this instance in the Lease and as field manager.
	Identity       string
	LeaseNamespace string
	LeaseName      string
	// Writers is the number of goroutines writing Service status (default 8).
	Writers int
	// LeaseDuration, RenewDeadline, RetryPeriod: a standby takes over at
	// most LeaseDuration after the leader dies (immediately if it shut
	// down cleanly and released the Lease).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// ConfigPoll is how often the config file is checked (default 1 s).
	ConfigPoll time.Duration
	Log        *slog.Logger
	// LogLevel, if set, follows the config file's log-level.
	LogLevel *slog.LevelVar
	// SpeakerImage overrides the image of the speaker DaemonSet the leader
	// keeps in spine and l2 mode. Empty: the image of container Container
	// of the controller's own Pod, PodName in LeaseNamespace (how Juju
	// runs it), with that Pod's pull policy and pull secrets.
	SpeakerImage string
	PodName      string
	Container    string // default speakerset.DefaultContainer
	// SpeakerPort is the speakers' status port (default
	// config.DefaultSpeakerPort), from which GET /v1/speakers gathers.
	SpeakerPort int
	// SpeakerAPI asks the speakers for their status (default: a client of
	// its own for SpeakerPort in LeaseNamespace).
	SpeakerAPI *speakerclient.Client
	// ProbeAddress is where other instances reach this one's metrics
	// listener (host:port). The leader publishes it beside the Lease, and
	// a standby that finds it refusing connections takes over at once
	// instead of when the Lease runs out. Empty: standbys wait it out.
	ProbeAddress string
	// ProbeEvery is how often a standby probes the leader (default
	// leadership.DefaultProbeEvery).
	ProbeEvery time.Duration
	// SpeakerHandOver is how long the speakers keep announcing after a
	// switch to calico mode (default speakerset.DefaultSpeakerHandOver).
	SpeakerHandOver time.Duration
}

func (o *Options) defaults() {
	if o.SpeakerPort == 0 {
		o.SpeakerPort = config.DefaultSpeakerPort
	}
	if o.EventClient == nil {
		o.EventClient = o.Client
	}
	if o.Identity == "" {
		host, _ := os.Hostname()
		o.Identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.LeaseName == "" {
		o.LeaseName = access.DefaultLeaseName
	}
	if o.LeaseNamespace == "" {
		o.LeaseNamespace = "default"
	}
	if o.Writers <= 0 {
		o.Writers = 8
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 5*time.Second, 3*time.Second, 500*time.Millisecond
	}
	if o.ConfigPoll == 0 {
		o.ConfigPoll = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}

// resyncEvery is how often every Service is reconciled even when nothing
// about it changed.
const resyncEvery = 10 * time.Minute

// Controller reconciles LoadBalancer Services.
type Controller struct {
	opts     Options
	log      *slog.Logger
	services corelisters.ServiceLister
	synced   cache.InformerSynced
	events   *outbox
	metrics  *metrics

	cfg           atomic.Pointer[config.Config] // latest valid config from the file
	file          atomic.Pointer[fileState]     // the file last read, and the config it gave
	cfgErr        atomic.Pointer[string]        // why the latest file was rejected, if it was
	configChanged chan struct{}
	// reloads asks the config watcher, the one goroutine that loads the
	// file, to load it now; it answers whether the config changed.
	reloads chan chan bool
	// readFile reads the config file (os.ReadFile; a test holds a read
	// back to show that loads never overlap).
	readFile func(string) ([]byte, error)
	// speakers keeps the speakers' objects while this instance leads.
	speakers *speakerset.Keeper
	// newTerm starts a leadership term (newTerm; a test makes it fail).
	newTerm func(*Controller, *config.Config) (*term, error)
	// passwordsChanged says the BGP password file changed: the speakers'
	// Secret follows.
	passwordsChanged chan struct{}

	leading   atomic.Bool
	leader    atomic.Pointer[string]  // identity of the current leader, as seen
	term      atomic.Pointer[term]    // the running allocation loop, when leading
	figures   atomic.Pointer[figures] // what the loop last published, when leading
	loopCalls atomic.Int64            // calls handed to the loop (inLoop), for tests
	started   atomic.Bool             // informers started and synced
	firstSee  sync.Map                // Service UID -> time first seen without an IP (latency metric)

	// speakerAPI asks the speakers for their status.
	speakerAPI *speakerclient.Client
}

// New creates a Controller; Run starts it.
func New(opts Options) (*Controller, error) {
	opts.defaults()
	if opts.Client == nil || opts.ConfigPath == "" {
		return nil, errors.New("controller: Client and ConfigPath are required")
	}
	c := &Controller{opts: opts, log: opts.Log, configChanged: make(chan struct{}, 1), passwordsChanged: make(chan struct{}, 1),
		reloads: make(chan chan bool), readFile: os.ReadFile, newTerm: newTerm}
	c.speakers = speakerset.New(speakerset.Options{Client: opts.Client, Namespace: opts.LeaseNamespace, Image: opts.SpeakerImage,
		PodName: opts.PodName, Container: opts.Container, Port: opts.SpeakerPort, HandOver: opts.SpeakerHandOver, Log: opts.Log})
	c.speakerAPI = opts.SpeakerAPI
	if c.speakerAPI == nil {
		c.speakerAPI = speakerclient.New(opts.Client, opts.LeaseNamespace, opts.SpeakerPort)
	}
	c.metrics = newMetrics(c)
	c.events = newOutbox(opts.EventClient, opts.Identity, c.log, c.metrics)
	return c, nil
}

// Run runs until ctx ends: it watches the config file, keeps the caches,
// serves nothing itself (see Handler), and allocates while it leads.
func (c *Controller) Run(ctx context.Context) error {
	// Every Service is looked at again every resyncEvery, so that nothing
	// (a status write lost on the way, say) stays wrong for good.
	factory := informers.NewSharedInformerFactory(c.opts.Client, resyncEvery)
	inf := factory.Core().V1().Services()
	c.services = inf.Lister()
	c.synced = inf.Informer().HasSynced
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.observe(obj, false) },
		UpdateFunc: func(_, obj any) { c.observe(obj, false) },
		DeleteFunc: func(obj any) { c.observe(obj, true) },
	}); err != nil {
		return err
	}
	go c.events.run(ctx)

	c.loadConfig()
	go c.watchConfig(ctx)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return ctx.Err()
	}
	c.started.Store(true)
	c.log.Info("caches synced", "identity", c.opts.Identity)

	return c.elect(ctx)
}

// lead runs one leadership term: wait for a valid config, adopt every
// existing assignment, then serve until the term ends.
func (c *Controller) lead(ctx context.Context) error {
	c.leading.Store(true)
	c.metrics.leader.Set(1)
	c.log.Info("started leading", "identity", c.opts.Identity)
	for c.cfg.Load() == nil {
		c.log.Warn("waiting for a valid config file before allocating", "path", c.opts.ConfigPath)
		select {
		case <-ctx.Done():
			return nil
		case <-c.configChanged:
		}
	}
	c.fenceOrWait(ctx)
	if ctx.Err() != nil {
		return nil
	}
	t, err := c.newTerm(c, c.cfg.Load())
	if err != nil {
		return fmt.Errorf("cannot start allocating: %w", err)
	}
	c.figures.Store(nil) // an earlier term's: stale
	c.term.Store(t)
	// Only this term is cleared: the same process may already lead again.
	defer c.term.CompareAndSwap(t, nil)
	t.run(ctx)
	return nil
}

// observe enqueues a Service that changed (or was deleted), for the
// running term.
func (c *Controller) observe(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	c.noteWaiting(svc, deleted)
	if t := c.term.Load(); t != nil {
		key, err := cache.MetaNamespaceKeyFunc(svc)
		if err != nil {
			runtime.HandleError(err)
			return
		}
		t.queue.Add(key)
	}
}

// noteWaiting keeps firstSee, the time each Service began to wait for an
// IP, for the allocation-latency metric: only Services calico-lb serves
// are timed, from when they became such a Service (a ClusterIP Service of
// a week that turns LoadBalancer has waited no week), and a Service that
// is gone or no longer served is forgotten, so the map holds no more than
// the Services waiting now.
func (c *Controller) noteWaiting(svc *corev1.Service, deleted bool) {
	class := ""
	if cfg := c.cfg.Load(); cfg != nil {
		class = cfg.LoadBalancerClass
	}
	switch {
	case deleted || svc.DeletionTimestamp != nil || !Managed(svc, class):
		c.firstSee.Delete(svc.UID)
	case len(svc.Status.LoadBalancer.Ingress) == 0:
		c.firstSee.LoadOrStore(svc.UID, time.Now())
	}
}

// Ready reports whether the controller can do its job, and if not, why.
func (c *Controller) Ready() (bool, string) {
	switch {
	case !c.started.Load():
		return false, "caches not synced yet"
	case c.cfg.Load() == nil:
		if e := c.cfgErr.Load(); e != nil {
			return false, "no valid config: " + *e
		}
		return false, "no config file yet at " + c.opts.ConfigPath
	}
	if c.leading.Load() && c.term.Load() == nil {
		return false, "leading, adopting existing assignments"
	}
	return true, ""
}

// Handler is the local HTTP API (see api.go).
func (c *Controller) Handler() http.Handler { return c.api() }

// MetricsHandler serves only /metrics, /healthz and /readyz, for the
// listener Prometheus scrapes on the pod network.
func (c *Controller) MetricsHandler() http.Handler { return c.readOnly() }

// Config is the config in force: the latest valid one the file gave; nil
// before there is one.
func (c *Controller) Config() *config.Config { return c.cfg.Load() }

// Identity names this instance in the Lease (Options.Identity, or the
// host and process when none was given).
func (c *Controller) Identity() string { return c.opts.Identity }
