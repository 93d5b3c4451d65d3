package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Users with static tokens. Admin is in system:masters; the others start
// with no permissions, so RBAC rules can be tested as the workload would
// run them.
const (
	UserAdmin      = "admin"
	UserController = "calico-lb-controller"
	UserSpeaker    = "calico-lb-speaker"
	UserNobody     = "nobody"
	// The components of a cluster with real nodes, as Kubernetes' default
	// RBAC knows them.
	UserKCM       = "system:kube-controller-manager"
	UserScheduler = "system:kube-scheduler"
	UserProxy     = "system:kube-proxy"
)

// NodeUser is the user a node's kubelet authenticates as.
func NodeUser(node string) string { return "system:node:" + node }

// Options tune the control plane.
type Options struct {
	// Log receives progress lines (build, start, stop); nil is quiet.
	Log func(string)
	// NoBuild refuses to build missing binaries (ErrNoBinaries instead).
	NoBuild bool
	// ServiceCIDRs defaults to a dual-stack pair, so dual-stack Services work.
	ServiceCIDRs string
	// NodePortRange defaults to 20000-52767: the default 30000-32767 runs
	// out after 2,768 LoadBalancer Services.
	NodePortRange string
	// Output receives the processes' stderr (nil: a log file in the work dir).
	Output *os.File
	// BindAddress is where kube-apiserver listens (default 127.0.0.1). A
	// network test bed gives it an address its node namespaces can reach.
	BindAddress string
	// Nodes names the nodes that will join (StartNode): each gets a
	// kubelet identity, authorized by the Node authorizer. With nodes,
	// kube-controller-manager and kube-scheduler run too.
	Nodes []string
	// NodeMonitorGracePeriod is how long a silent node stays Ready
	// (kube-controller-manager's default is 50 s; node-failure tests want
	// less). Only with Nodes.
	NodeMonitorGracePeriod time.Duration
}

// Cluster is a running etcd + kube-apiserver.
type Cluster struct {
	Dir    string // work directory: certificates, tokens, etcd data, logs
	Server string // https://127.0.0.1:port
	CAData []byte // PEM of the CA that signed the serving certificate

	bind     net.IP
	tokens   map[string]string
	procs    []*proc // in start order: etcd, kube-apiserver, and with nodes kube-controller-manager, kube-scheduler
	nodes    []*Node // stopped before the control plane
	nodesMu  sync.Mutex
	out      *os.File
	stopOnce sync.Once
	stopErr  error
	logf     func(string)
}

// proc is a child process and a channel closed when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start builds (if needed) and starts etcd and kube-apiserver on free
// loopback ports, with token authentication and RBAC, and waits until the
// apiserver is ready. Stop it with Stop, also on failure paths.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string) {}
	}
	var etcdBin, apiBin string
	var err error
	if opts.NoBuild {
		etcdBin, apiBin = filepath.Join(BinDir(), "etcd"), filepath.Join(BinDir(), "kube-apiserver")
		for _, p := range []string{etcdBin, apiBin} {
			if _, err := os.Stat(p); err != nil {
				return nil, ErrNoBinaries
			}
		}
	} else if etcdBin, apiBin, err = Binaries(ctx, logf); err != nil {
		return nil, err
	}
	Sweep()
	// The process ID in the name lets a later run remove what a crashed
	// one left.
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	bind := opts.BindAddress
	if bind == "" {
		bind = "127.0.0.1"
	}
	c := &Cluster{Dir: dir, tokens: map[string]string{}, logf: logf, bind: net.ParseIP(bind)}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	if err := c.writeCredentials(opts.Nodes); err != nil {
		return nil, err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.Server = "https://" + net.JoinHostPort(bind, strconv.Itoa(ports[2]))

	out := opts.Output
	if out == nil {
		if out, err = os.Create(filepath.Join(dir, "control-plane.log")); err != nil {
			return nil, err
		}
	}
	if err := c.spawn(out, etcdBin,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--unsafe-no-fsync", // test data: durability is not the point, speed is
		"--log-level=error",
	); err != nil {
		return nil, err
	}
	cidrs := opts.ServiceCIDRs
	if cidrs == "" {
		cidrs = "10.96.0.0/16,fd00:96::/112"
	}
	nodePorts := opts.NodePortRange
	if nodePorts == "" {
		nodePorts = "20000-52767"
	}
	c.out = out
	authz, admission := "--authorization-mode=RBAC", "--enable-admission-plugins="
	if len(opts.Nodes) > 0 {
		// Kubelets are authorized as Kubernetes authorizes them.
		authz, admission = "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction"
	}
	if err := c.spawn(out, apiBin,
		"--etcd-servers="+etcdClient,
		"--bind-address="+bind,
		"--advertise-address="+bind,
		"--secure-port="+strconv.Itoa(ports[2]),
		"--tls-cert-file="+filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(dir, "serving.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		authz, admission,
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range="+cidrs,
		"--service-node-port-range="+nodePorts,
		"--profiling=false",
		"--v=0",
	); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := c.waitReady(ctx, 3*time.Minute); err != nil {
		return nil, fmt.Errorf("kube-apiserver not ready (log: %s): %w", out.Name(), err)
	}
	logf(fmt.Sprintf("control plane ready at %s in %s (etcd, kube-apiserver; work dir %s)", c.Server, time.Since(start).Round(time.Millisecond), dir))
	if len(opts.Nodes) > 0 {
		if err := c.startControllers(ctx, opts); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

func (c *Cluster) spawn(out *os.File, bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// waitReady polls /readyz until it answers ok, a process exits, or time runs out.
func (c *Cluster) waitReady(ctx context.Context, limit time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAData)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited: %v", filepath.Base(p.cmd.Path), p.cmd.ProcessState)
			default:
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.tokens[UserAdmin])
		resp, err := client.Do(req)
		if err == nil {
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(body.String()))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s; last answer: %s", limit, last)
}

// Stop stops kube-apiserver and then etcd, and removes the work directory.
// kube-apiserver does not exit promptly on SIGTERM once etcd is gone, so it
// goes first, with a deadline and then SIGKILL. Safe to call twice.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		// Nodes first: kube-apiserver lingers while kubelets are connected.
		c.nodesMu.Lock()
		nodes := c.nodes
		c.nodesMu.Unlock()
		for _, n := range nodes {
			n.Stop()
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			stopProcess(c.procs[i], 10*time.Second)
		}
		if os.Getenv("CALICO_LB_KEEP_CLUSTER_DIR") == "" {
			c.stopErr = os.RemoveAll(c.Dir)
		}
	})
	return c.stopErr
}

func stopProcess(p *proc, grace time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Config returns a client config that authenticates as user.
func (c *Cluster) Config(user string) *rest.Config {
	return &rest.Config{
		Host:            c.Server,
		BearerToken:     c.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData},
		QPS:             1000,
		Burst:           2000,
	}
}

// Client returns a clientset that authenticates as user.
func (c *Cluster) Client(user string) kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(c.Config(user))
}

// WriteKubeconfig writes a kubeconfig for user and returns its path, for
// processes started outside the test (the controller, kubectl).
func (c *Cluster) WriteKubeconfig(user string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: c.tokens[user]}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: user}
	cfg.CurrentContext = "test"
	path := filepath.Join(c.Dir, "kubeconfig-"+user)
	return path, clientcmd.WriteToFile(*cfg, path)
}

// writeCredentials makes a CA and a serving certificate for 127.0.0.1, the
// service-account signing key, and the static token file.
func (c *Cluster) writeCredentials(nodes []string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "calico-lb test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Pods reach kube-apiserver as the kubernetes Service, the first
		// address of the default service CIDRs.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, c.bind, net.IPv4(10, 96, 0, 1), net.ParseIP("fd00:96::1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	c.CAData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	var tokens strings.Builder
	users := []struct{ name, groups string }{
		{UserAdmin, "system:masters"}, {UserController, ""}, {UserSpeaker, ""}, {UserNobody, ""},
		{UserKCM, ""}, {UserScheduler, ""}, {UserProxy, ""},
	}
	for _, n := range nodes {
		users = append(users, struct{ name, groups string }{NodeUser(n), "system:nodes"})
	}
	for _, u := range users {
		tok, err := randomToken()
		if err != nil {
			return err
		}
		c.tokens[u.name] = tok
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", tok, u.name, u.name, u.groups)
	}
	files := map[string][]byte{
		"ca.crt":      c.CAData,
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"serving.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: srvKeyDER}),
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv":  []byte(tokens.String()),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", b), nil
}

// FreeAddress is a free loopback host:port (see FreePorts).
func FreeAddress() (string, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
}

// FreePorts reserves n distinct free loopback ports. They are released
// before the processes bind them, so another process could take one in
// between; on this single-user test box that race has not been seen.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
