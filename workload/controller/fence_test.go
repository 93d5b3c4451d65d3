package controller

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/apienv"
)

// A new leader adopts what the last leader wrote just before it went,
// even when its cache lags: the last leader gave p0 10.93.0.0 a moment
// before the Lease came free, and this controller's watch delivers two
// seconds late. Without the fence it adopted nothing, gave p1 10.93.0.0
// too, and two Services shared an address.
func TestTakeoverSeesTheLastWrites(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.93.0.0/28], avoid-buggy-ips: false}\n")
	ctx := context.Background()
	// Another instance (gone) holds the Lease for now, so b waits.
	ghost, holdFor := "ghost", int32(3600)
	now := metav1.NowMicro()
	if _, err := e.client.CoordinationV1().Leases(e.ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: e.lease},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &ghost, LeaseDurationSeconds: &holdFor, AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.service("p1")
	cfg := apienv.ControllerConfig(t, e.cl, e.ns, e.lease)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return lateWatches{rt: rt, lag: 2 * time.Second} })
	b := e.start("b", func(o *Options) { o.Client = kubernetes.NewForConfigOrDie(cfg) })
	waitUntil(t, "b is a standby with synced caches", func() bool { l := b.c.leader.Load(); return l != nil && *l == ghost })

	// The last leader's last write, then its Lease comes free.
	p0 := e.service("p0")
	p0.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.93.0.0"}}
	if _, err := e.client.CoreV1().Services(e.ns).UpdateStatus(ctx, p0, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.CoordinationV1().Leases(e.ns).Delete(ctx, e.lease, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got := e.waitAnyIP("p1")
	t.Logf("p1 got %s", got)
	if got == "10.93.0.0" {
		t.Fatalf("p1 was given 10.93.0.0, which the last leader gave p0: the new leader adopted from a cache that missed it")
	}
	e.waitIPs("p0", "10.93.0.0")
}

// lateWatches delivers every watch's data lag after it arrives, as a busy
// apiserver or network may; other requests pass at once.
type lateWatches struct {
	rt  http.RoundTripper
	lag time.Duration
}

func (l lateWatches) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || req.URL.Query().Get("watch") != "true" {
		return resp, err
	}
	resp.Body = newLateBody(resp.Body, l.lag)
	return resp, nil
}

type chunk struct {
	data []byte
	at   time.Time
	err  error
}

// lateBody reads ahead and hands each chunk out lag after it arrived.
type lateBody struct {
	rc     io.ReadCloser
	lag    time.Duration
	chunks chan chunk
	rest   []byte
	once   sync.Once
}

func newLateBody(rc io.ReadCloser, lag time.Duration) *lateBody {
	b := &lateBody{rc: rc, lag: lag, chunks: make(chan chunk, 1024)}
	go func() {
		for {
			buf := make([]byte, 32<<10)
			n, err := rc.Read(buf)
			b.chunks <- chunk{data: buf[:n], at: time.Now(), err: err}
			if err != nil {
				close(b.chunks)
				return
			}
		}
	}()
	return b
}

func (b *lateBody) Read(p []byte) (int, error) {
	for len(b.rest) == 0 {
		c, ok := <-b.chunks
		if !ok {
			return 0, io.EOF
		}
		time.Sleep(time.Until(c.at.Add(b.lag)))
		if c.err != nil && len(c.data) == 0 {
			return 0, c.err
		}
		b.rest = c.data
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

func (b *lateBody) Close() error {
	var err error
	b.once.Do(func() { err = b.rc.Close() })
	return err
}
