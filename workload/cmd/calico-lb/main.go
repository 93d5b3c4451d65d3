// Command calico-lb is the workload: `calico-lb controller` allocates
// LoadBalancer IPs and keeps the speakers; `calico-lb speaker` announces
// them from each selected node.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/controller"
	"github.com/calico-lb/calico-lb/workload/failovertest"
	"github.com/calico-lb/calico-lb/workload/failovertest/speakerhook"
	"github.com/calico-lb/calico-lb/workload/leadership"
	"github.com/calico-lb/calico-lb/workload/speaker"
	"github.com/calico-lb/calico-lb/workload/speakerclient"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

// version is set by the image build (-X main.version=...).
var version = "dev"

const usage = `usage: calico-lb controller|speaker|access|cleanup|probe [flags]

  controller   allocate LoadBalancer IPs for Services (leader-elected)
  speaker      announce this node's LoadBalancer IPs (one per node)
  access       create the controller's ServiceAccount and RBAC, and its token
  cleanup      delete what the controller created (speakers, their RBAC, the
               Lease) and the controller's own ServiceAccount and RBAC
  probe        the failover test's outside client: run it on a host that
               reaches the load-balancer IPs through the network, not a node
  version      print the version

Run "calico-lb <command> -h" for its flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "controller":
		err = runController(os.Args[2:])
	case "speaker":
		err = runSpeaker(os.Args[2:])
	case "access":
		err = runAccess(os.Args[2:])
	case "cleanup":
		err = runCleanup(os.Args[2:])
	case "probe":
		err = runProbe(os.Args[2:])
	case "version", "--version":
		fmt.Println(version)
		return
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "calico-lb:", err)
		os.Exit(1)
	}
}

// controllerClients are the controller's API clients: one for its work,
// one (slower) for Events. With tokenFile they act as the controller's
// own ServiceAccount; the kubeconfig or in-cluster config then gives only
// the apiserver's address and CA.
func controllerClients(kubeconfig, tokenFile string, qps float64) (client, events *kubernetes.Clientset, err error) {
	restCfg, err := clientConfig(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	if tokenFile != "" {
		// Only the address and the CA: the pod's own credentials are
		// the charm's, far more than the controller needs.
		restCfg = rest.AnonymousClientConfig(restCfg)
		restCfg.BearerTokenFile = tokenFile
	}
	restCfg.QPS, restCfg.Burst = float32(qps), int(qps*2)
	restCfg.UserAgent = "calico-lb-controller"
	if client, err = kubernetes.NewForConfig(restCfg); err != nil {
		return nil, nil, err
	}
	evCfg := rest.CopyConfig(restCfg)
	evCfg.QPS, evCfg.Burst = controller.EventQPS, controller.EventBurst
	events, err = kubernetes.NewForConfig(evCfg)
	return client, events, err
}

// localAPIAddress is --api-address, else the config file's, else the default.
func localAPIAddress(flagged, cfgPath string) string {
	if flagged != "" {
		return flagged
	}
	if data, err := os.ReadFile(cfgPath); err == nil {
		if cfg, err := config.Parse(data); err == nil {
			return cfg.APIAddress
		}
	}
	return config.DefaultAPIAddress
}

// serveLocalAPI serves the controller's local API (h) on addr, its /v1/
// paths to the holder of the key in keyPath (written there if there is
// none).
func serveLocalAPI(h http.Handler, addr, keyPath string, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("local API: %w", err)
	}
	// The local API's actions (a pool change applied, the speakers
	// gathered) may take longer to answer than the default allows.
	localTimeouts := api.DefaultTimeouts
	localTimeouts.Write = 2 * time.Minute
	key, err := access.LoadOrCreateKey(keyPath)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := api.Server(access.RequireKey(h, key, "/healthz", "/readyz", "/metrics"), localTimeouts)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("local API stopped", "error", err)
		}
	}()
	log.Info("local API listening", "address", ln.Addr().String())
	return srv, nil
}

func runController(args []string) error {
	fs := flag.NewFlagSet("controller", flag.ExitOnError)
	cfgPath := fs.String("config", config.DefaultPath, "workload config file (reloaded when it changes)")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig; empty: in-cluster config")
	apiKeyFile := fs.String("api-key-file", "", "the local API's key: its /v1/ paths want it as a bearer token (written here, 0600, when the file does not exist); empty: "+config.DefaultAPIKeyFile)
	tokenFile := fs.String("token-file", "", "act as the controller's own ServiceAccount with the token in this file (written by `calico-lb access`), renewing it at half-life; the kubeconfig or in-cluster config then only gives the apiserver's address and CA")
	identity := fs.String("identity", os.Getenv("POD_NAME"), "leader-election identity (default: hostname-pid)")
	leaseNS := fs.String("lease-namespace", envOr("POD_NAMESPACE", "default"), "namespace of the leader-election Lease")
	apiAddr := fs.String("api-address", "", "local HTTP API address (default: the config's api-address, else "+config.DefaultAPIAddress+")")
	metricsAddr := fs.String("metrics-address", config.DefaultMetricsAddress, "read-only listener for Prometheus (/metrics, /healthz, /readyz) on the pod network; empty: none")
	speakerPort := fs.Int("speaker-port", config.DefaultSpeakerPort, "the speakers' status port, from which GET /v1/speakers gathers")
	writers := fs.Int("writers", 8, "goroutines writing Service status")
	speakerImage := fs.String("speaker-image", os.Getenv("CALICO_LB_IMAGE"), "image of the speaker DaemonSet (spine and l2 mode); empty: the image of --container in the controller's own Pod")
	podName := fs.String("pod-name", os.Getenv("POD_NAME"), "the controller's own Pod in --lease-namespace, whose image, pull policy and pull secrets the speakers get")
	container := fs.String("container", speakerset.DefaultContainer, "the controller's container in its own Pod")
	qps := fs.Float64("kube-qps", 500, "API requests per second for status writes")
	lease := fs.Duration("lease-duration", 5*time.Second, "a standby takes over at most this long after the leader dies")
	renew := fs.Duration("renew-deadline", 3*time.Second, "the leader gives up leading if it cannot renew within this")
	retry := fs.Duration("retry-period", 500*time.Millisecond, "how often to try to acquire or renew the Lease")
	_ = fs.Parse(args)

	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	client, events, err := controllerClients(*kubeconfig, *tokenFile, *qps)
	if err != nil {
		return err
	}
	// The metrics listener opens first: the leader publishes its address
	// so that standbys see at once when its process is gone.
	mln, probeAddr, err := metricsListener(*metricsAddr, client, *leaseNS, *podName, log)
	if err != nil {
		return err
	}
	speakers := speakerclient.New(client, *leaseNS, *speakerPort)
	ctrl, err := controller.New(controller.Options{
		ProbeAddress: probeAddr,
		Client:       client, EventClient: events, ConfigPath: *cfgPath,
		Identity: *identity, LeaseNamespace: *leaseNS, Writers: *writers, Log: log,
		LeaseDuration: *lease, RenewDeadline: *renew, RetryPeriod: *retry, LogLevel: level, SpeakerImage: *speakerImage, SpeakerPort: *speakerPort,
		PodName: *podName, Container: *container, SpeakerAPI: speakers,
	})
	if err != nil {
		return err
	}
	// The failover test is a part of its own beside the controller: it
	// reads the Services through the controller's caches and is served on
	// the same local API, behind the same key.
	failover := failovertest.New(failovertest.Options{Client: client, Namespace: *leaseNS, Identity: ctrl.Identity(), PodName: *podName,
		Config: ctrl.Config, Services: ctrl, Speakers: speakers, Log: log})
	local := http.NewServeMux()
	local.Handle("/", ctrl.Handler())
	failover.Register(local)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *tokenFile != "" {
		f := access.TokenFile{Path: *tokenFile}
		go f.KeepToken(ctx, client, access.Access{Namespace: *leaseNS}, access.TokenTTL, time.Minute, func(err error) {
			if err != nil {
				log.Error("cannot renew the controller's token; the charm renews it on its next hook", "error", err)
			}
		})
	}
	go failover.WatchAbandoned(ctx)
	srv, err := serveLocalAPI(local, localAPIAddress(*apiAddr, *cfgPath), cmp.Or(*apiKeyFile, config.DefaultAPIKeyFile), log)
	if err != nil {
		return err
	}
	if mln != nil {
		defer serveMetrics(mln, ctrl.MetricsHandler(), probeAddr, log).Close()
	}
	err = ctrl.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// metricsListener opens the controller's metrics listener on addr (none
// when addr is ""), and says where other instances reach it: addr itself
// when bound to one address, else the Pod's IP; "" when unknown, which
// leaves standbys to wait out the Lease.
func metricsListener(addr string, client kubernetes.Interface, ns, pod string, log *slog.Logger) (net.Listener, string, error) {
	if addr == "" {
		return nil, "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics listener (--metrics-address): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	published, err := leadership.Address(ln.Addr().String(), func() (string, error) { return leadership.PodIP(ctx, client, ns, pod) })
	if err != nil {
		log.Warn("standbys will wait out the Lease if this instance dies while leading", "error", err)
	}
	return ln, published, nil
}

// serveMetrics serves h on ln, the listener whose address standbys probe.
func serveMetrics(ln net.Listener, h http.Handler, published string, log *slog.Logger) *http.Server {
	srv := api.Server(h, api.DefaultTimeouts)
	go func() {
		// Standbys take this address refusing for this process gone
		// (leadership.Prober), so the process must not outlive it.
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the metrics listener stopped: exiting, as standbys would take its refusals for this process's death", "error", err)
			os.Exit(1)
		}
	}()
	log.Info("metrics listening", "address", ln.Addr().String(), "published-to-standbys", published)
	return srv
}

// serveSpeakerAPI serves the speaker's status API on addr (on NODE_IP when
// addr has no host), and its health checks on loopback too when the API
// is not there.
func serveSpeakerAPI(sp *speaker.Speaker, addr string) (srv, local *http.Server, err error) {
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" && os.Getenv("NODE_IP") != "" {
		addr = net.JoinHostPort(os.Getenv("NODE_IP"), port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("local API: %w", err)
	}
	srv = api.Server(sp.Handler(), api.DefaultTimeouts)
	go func() { _ = srv.Serve(ln) }()
	// Pebble's readiness check asks on loopback: when the API listens on
	// the node's address only, serve /healthz and /readyz there too, or the
	// check fails for good and Pebble restarts a healthy speaker.
	local = api.Server(sp.HealthHandler(), api.DefaultTimeouts)
	if host, port, _ := net.SplitHostPort(addr); !checkReaches(host) {
		lln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			_ = srv.Close()
			return nil, nil, fmt.Errorf("local health API: %w", err)
		}
		go func() { _ = local.Serve(lln) }()
	}
	return srv, local, nil
}

func runSpeaker(args []string) error {
	fs := flag.NewFlagSet("speaker", flag.ExitOnError)
	cfgPath := fs.String("config", config.DefaultPath, "workload config file (reloaded when it changes)")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig; empty: in-cluster config")
	nodeName := fs.String("node-name", os.Getenv("NODE_NAME"), "this node's name (the downward API's spec.nodeName)")
	apiAddr := fs.String("api-address", fmt.Sprintf(":%d", config.DefaultSpeakerPort), "the read-only status and metrics API (/v1/ for the controller alone; /metrics, /readyz open): the controller gathers bgp-status from it and Prometheus scrapes it; without a host, on NODE_IP (the node's address) when that is set")
	controllerAccount := fs.String("controller-account", "", "namespace/name of the controller's ServiceAccount: /v1/ answers only its tokens for this node's audience, as the apiserver vouches for them; empty: /v1/ answers nobody")
	l2Port := fs.Int("l2-port", speaker.DefaultL2Port, "UDP port of the L2-mode liveness heartbeats (the same on every node)")
	holdDown := fs.Duration("l2-hold-down", 3*time.Second, "how long a returning speaker must be alive before it takes IPs back (l2 mode)")
	l2Keys := fs.String("l2-key-file", speaker.DefaultL2KeyFile, "the keys that authenticate the L2 heartbeats, one per line in hex, the first signing (the controller writes them into the speakers' Secret)")
	fromNS := fs.String("namespace", os.Getenv("POD_NAMESPACE"), "with --configmap: the namespace of the ConfigMap and Secret")
	fromCM := fs.String("configmap", "", "read the config from this ConfigMap and the passwords and heartbeat keys from --secret, through the API (a change applies within a second, without a restart); empty: from the files named")
	fromSecret := fs.String("secret", "", "with --configmap: the Secret holding bgp-passwords.yaml and l2-keys")
	holdFile := fs.String("hold-file", "", "where the failover test holds this speaker down (a file in a volume the pod keeps across restarts); empty: the test cannot stop this speaker")
	_ = fs.Parse(args)
	if *nodeName == "" {
		return errors.New("speaker: --node-name (or NODE_NAME) is required")
	}
	if *l2Port <= 0 || *l2Port > 65535 {
		return fmt.Errorf("speaker: --l2-port %d: want a UDP port, 1-65535", *l2Port)
	}
	if *holdDown <= 0 {
		return fmt.Errorf("speaker: --l2-hold-down %s: want a positive duration such as 3s", *holdDown)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", *nodeName)
	restCfg, err := clientConfig(*kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "calico-lb-speaker"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	var files speaker.Files = speaker.OSFiles{}
	if *fromCM != "" {
		if *fromNS == "" || *fromSecret == "" {
			return errors.New("speaker: --configmap needs --namespace (or POD_NAMESPACE) and --secret")
		}
		files = speaker.NewKubeFiles(client, *fromNS, *fromCM, *fromSecret)
	}
	var callers speaker.Callers
	if *controllerAccount != "" {
		if callers, err = speaker.NewTokenReviews(client, *nodeName, *controllerAccount); err != nil {
			return fmt.Errorf("speaker: %w", err)
		}
	}
	// The failover test's part: its journal, its hold (in --hold-file) and
	// its paths on the status API.
	test := speakerhook.New(speakerhook.Options{Client: client, NodeName: *nodeName, HoldFile: *holdFile, Log: log})
	sp := speaker.NewSpeaker(speaker.Options{Client: client, NodeName: *nodeName, ConfigPath: *cfgPath, Log: log, Files: files,
		L2Port: *l2Port, HoldDown: *holdDown, L2KeyFile: *l2Keys, Callers: callers, Test: test})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, local, err := serveSpeakerAPI(sp, *apiAddr)
	if err != nil {
		return err
	}
	err = sp.Run(ctx) // withdraws every route before it returns
	_ = srv.Close()
	_ = local.Close()
	if errors.Is(err, speaker.ErrStopped) {
		log.Warn("stopped by the failover test after withdrawing; Pebble starts the speaker again, held down until the test resumes it")
		return nil
	}
	return err
}

// checkReaches says whether a listener on host answers Pebble's check at
// 127.0.0.1: it does on all addresses (empty, 0.0.0.0, ::) and on
// 127.0.0.1 itself.
func checkReaches(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || host == "localhost" || ip != nil && (ip.IsUnspecified() || ip.Equal(net.IPv4(127, 0, 0, 1)))
}

// runCleanup is what the charm runs when the application is removed.
func runCleanup(args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
	kubeconfig, ns, lease := namespaceFlags(fs)
	_ = fs.Parse(args)
	client, err := clientFor(*kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := access.Cleanup(ctx, client, access.Access{Namespace: *ns, LeaseName: *lease}); err != nil {
		return err
	}
	fmt.Printf("removed the speakers, their RBAC and config, the Lease, and the controller's ServiceAccount and RBAC in %s\n", *ns)
	return nil
}

// runAccess is what the charm runs on every hook, with the pod's own
// (trusted) credentials, before the controller starts or while it runs.
func runAccess(args []string) error {
	fs := flag.NewFlagSet("access", flag.ExitOnError)
	kubeconfig, ns, lease := namespaceFlags(fs)
	tokenFile := fs.String("token-file", "", "where to keep the controller's token (required)")
	owner := fs.Int("owner", -1, "user and group that own the token file and its directory (the controller's); -1: leave them")
	failover := fs.String("failover-test", "auto", "the failover test's powers (cordon, evict, delete pods): on (a test starts), off, or auto (on while a node carries a test's mark, else off)")
	receipt := fs.String("receipt-file", "", "after success, write here when the command may next have something to do (the charm skips it until then); removed first, so a failed run leaves none; empty: none")
	_ = fs.Parse(args)
	if *tokenFile == "" {
		return errors.New("access: --token-file is required")
	}
	if *failover != "on" && *failover != "off" && *failover != "auto" {
		return fmt.Errorf("access: --failover-test %q: want on, off or auto", *failover)
	}
	client, err := clientFor(*kubeconfig)
	if err != nil {
		return err
	}
	if *receipt != "" {
		if err := access.ClearReceipt(*receipt); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := access.TokenFile{Path: *tokenFile}
	if *owner >= 0 {
		f.Owner = owner
	}
	a := access.Access{Namespace: *ns, LeaseName: *lease}
	if err := a.Grant(ctx, client, f, access.TokenTTL); err != nil {
		return err
	}
	grant := *failover == "on"
	if *failover == "auto" {
		if grant, err = failovertest.Underway(ctx, client, a); err != nil {
			return err
		}
	}
	if err := a.Failover(ctx, client, grant); err != nil {
		return err
	}
	if *receipt == "" {
		return nil
	}
	return access.WriteReceipt(*receipt, access.Receipt(time.Now(), f, grant))
}

// namespaceFlags are the flags of the commands that act on the
// controller's namespace with the caller's credentials.
func namespaceFlags(fs *flag.FlagSet) (kubeconfig, ns, lease *string) {
	kubeconfig = fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig; empty: in-cluster config")
	ns = fs.String("namespace", envOr("POD_NAMESPACE", "default"), "the controller's namespace")
	lease = fs.String("lease-name", access.DefaultLeaseName, "the leader-election Lease")
	return kubeconfig, ns, lease
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	restCfg, err := clientConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(restCfg)
}

func clientConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
