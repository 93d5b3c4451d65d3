package controller

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/apienv"
	"github.com/calico-lb/calico-lb/tests/cluster"
)

func TestMain(m *testing.M) { apienv.Main(m) }

func controlPlane(t *testing.T) *cluster.Cluster { return apienv.ControlPlane(t) }

type env struct {
	t       *testing.T
	cl      *cluster.Cluster
	client  kubernetes.Interface
	ns      string
	class   string
	lease   string
	cfgPath string
}

func newEnv(t *testing.T) *env {
	cl := controlPlane(t)
	client := cl.Client(cluster.UserAdmin)
	name := apienv.Namespace(t, client)
	return &env{t: t, cl: cl, client: client, ns: name, class: "test.calico-lb.io/" + name, lease: name,
		cfgPath: filepath.Join(t.TempDir(), "config.yaml")}
}

// config writes the controller's config file: the given YAML body plus this
// test's load-balancer class.
func (e *env) config(body string) {
	e.t.Helper()
	data := "load-balancer-class: " + e.class + "\n" + body
	tmp := e.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgPath); err != nil {
		e.t.Fatal(err)
	}
}

type running struct {
	c    *Controller
	api  *httptest.Server
	stop func()
}

// start runs a controller until the test ends or stop is called.
func (e *env) start(id string, mods ...func(*Options)) *running {
	e.t.Helper()
	opts := Options{
		Client: e.controllerClient(), ConfigPath: e.cfgPath, Identity: id,
		LeaseNamespace: e.ns, LeaseName: e.lease, ConfigPoll: 100 * time.Millisecond,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(testWriter{e.t, id}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mods {
		m(&opts)
	}
	c, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	r := &running{c: c, api: httptest.NewServer(c.Handler())}
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done; r.api.Close() }) }
	e.t.Cleanup(r.stop)
	return r
}

// controllerClient authenticates as the controller's own ServiceAccount
// (apienv.ControllerClient): every test of the package runs the
// controller with exactly the RBAC the charm grants it.
func (e *env) controllerClient() kubernetes.Interface {
	e.t.Helper()
	return apienv.ControllerClient(e.t, e.cl, e.ns, e.lease)
}

type testWriter struct {
	t  *testing.T
	id string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("[%s] %s", w.id, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// service creates a LoadBalancer Service of this test's class.
func (e *env) service(name string, mod ...func(*corev1.Service)) *corev1.Service {
	e.t.Helper()
	class := e.class
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &class,
			Ports:             []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			Selector:          map[string]string{"app": name},
		},
	}
	for _, m := range mod {
		m(svc)
	}
	out, err := e.client.CoreV1().Services(e.ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create service %s: %v", name, err)
	}
	return out
}

func (e *env) delete(name string) {
	e.t.Helper()
	if err := e.client.CoreV1().Services(e.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatalf("delete service %s: %v", name, err)
	}
}

func (e *env) get(name string) *corev1.Service {
	e.t.Helper()
	svc, err := e.client.CoreV1().Services(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("get %s: %v", name, err)
	}
	return svc
}

// waitFor polls until cond holds for the Service, and returns it.
func (e *env) waitFor(name string, what string, cond func(*corev1.Service) bool) *corev1.Service {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var svc *corev1.Service
	for time.Now().Before(deadline) {
		s, err := e.client.CoreV1().Services(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			svc = s
			if cond(s) {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("service %s never %s; last status %+v", name, what, svc.Status.LoadBalancer)
	return nil
}

func (e *env) waitIPs(name string, want ...string) *corev1.Service {
	e.t.Helper()
	return e.waitFor(name, "got "+strings.Join(want, ","), func(s *corev1.Service) bool {
		return slices.Equal(ingressStrings(s), want)
	})
}

func (e *env) waitAnyIP(name string) string {
	e.t.Helper()
	s := e.waitFor(name, "got an IP", func(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) > 0 })
	return s.Status.LoadBalancer.Ingress[0].IP
}

func ingressStrings(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// waitEvent waits for an Event with reason on the Service, whose message
// contains sub, and returns the message.
func (e *env) waitEvent(name, reason, sub string) string {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	sel := fields.Set{"involvedObject.name": name, "reason": reason}.String()
	var seen []string
	for time.Now().Before(deadline) {
		evs, err := e.client.CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
		if err == nil {
			for _, ev := range evs.Items {
				if strings.Contains(ev.Message, sub) {
					return ev.Message
				}
				seen = append(seen, ev.Message)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("no %s event on %s containing %q; saw %q", reason, name, sub, seen)
	return ""
}

// httpGet fetches a path of a controller's local API.
func httpGet(t *testing.T, r *running, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.api.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func httpPost(t *testing.T, r *running, path string) (int, string) {
	t.Helper()
	resp, err := http.Post(r.api.URL+path, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	apienv.WaitUntil(t, what, cond)
}
