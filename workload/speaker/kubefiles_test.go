package speaker

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failovertest/speakerhook"
)

func speakerConfig(t *testing.T, pools string) string {
	t.Helper()
	o := config.DefaultOptions()
	o.PeeringMode, o.Pools = "spine", pools
	o.SpinePeers = "- {address: 127.0.0.2, as-number: 64500}\n"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestKubeFilesReload: a running speaker reading its files from the
// ConfigMap and Secret takes a new config and a new API token within a
// second of their change, in the same process (before, a change reached
// speakers only through new pods).
func TestKubeFilesReload(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "lb", Name: "cfg"}, Data: map[string]string{"config.yaml": speakerConfig(t, "10.0.0.0/28")}},
	)
	files := NewKubeFiles(client, "lb", "cfg", "sec")
	sp := NewSpeaker(Options{Client: client, NodeName: "node1", ConfigPath: config.DefaultPath, Files: files, ConfigPoll: time.Hour})
	go func() { _ = sp.Run(ctx) }()
	pools := func() string {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		if sp.cfg == nil || len(sp.cfg.Pools) == 0 {
			return ""
		}
		return sp.cfg.Pools[0].Addresses[0].String()
	}
	waitFor(t, 5*time.Second, "the first config", func() bool { return pools() == "10.0.0.0/28" })
	if _, err := files.ReadFile(DefaultL2KeyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the keys before the Secret exists: %v, want not-exist", err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lb", Name: "sec"}, Data: map[string][]byte{"l2-keys": []byte("one\n")}}
	if _, err := client.CoreV1().Secrets("lb").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := files.ReadFile("/etc/calico-lb/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a key neither object has: %v, want not-exist", err)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "lb", Name: "cfg"}, Data: map[string]string{"config.yaml": speakerConfig(t, "10.0.1.0/28")}}
	if _, err := client.CoreV1().ConfigMaps("lb").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 5*time.Second, "the new pool", func() bool { return pools() == "10.0.1.0/28" })
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the new config took %s (ConfigPoll is an hour: the watch must bring it)", d)
	}

	keys := func() string {
		b, _ := files.ReadFile(DefaultL2KeyFile)
		return string(b)
	}
	waitFor(t, 5*time.Second, "the first keys", func() bool { return keys() == "one\n" })
	sec.Data["l2-keys"] = []byte("two\n")
	if _, err := client.CoreV1().Secrets("lb").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the new keys", func() bool { return keys() == "two\n" })
}

// TestLivenessSetKeys: a key rotation reaches running heartbeats. A
// speaker that accepts only key A does not hear one signing with B (which
// accepts A too, as a rotation has it) until SetKeys adds B.
func TestLivenessSetKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := NewKey(), NewKey()
	ka, _ := ParseL2Keys([]byte(a + "\n"))
	kb, _ := ParseL2Keys([]byte(b + "\n" + a + "\n"))
	l1, err := StartLiveness(ctx, "n1", netip.MustParseAddrPort("127.0.0.1:0"), ka, 20*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := StartLiveness(ctx, "n2", netip.MustParseAddrPort("127.0.0.1:0"), kb, 20*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]netip.AddrPort{
		"n1": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(l1.Port())),
		"n2": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(l2.Port())),
	}
	l1.SetPeers(peers)
	l2.SetPeers(peers)
	hears := func(l *Liveness, node string) bool {
		for _, m := range l.Members(time.Now()) {
			if m.Node == node {
				return true
			}
		}
		return false
	}
	time.Sleep(300 * time.Millisecond)
	if hears(l1, "n2") {
		t.Fatal("n1 heard heartbeats signed with a key it does not have")
	}
	both, _ := ParseL2Keys([]byte(a + "\n" + b + "\n"))
	if err := l1.SetKeys(both); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "n1 hearing n2 after the rotation", func() bool { return hears(l1, "n2") })
	if err := l1.SetKeys(L2Keys{}); err == nil {
		t.Fatal("SetKeys took no keys")
	}
}

// A speaker the failover test holds down answers the controller's POST
// /v1/resume, which ends the hold. (When the token was read from files
// watched only once the hold ended, every request was refused and the
// test waited the whole hold out.)
func TestHeldSpeakerAnswersResume(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "lb", Name: "cfg"}, Data: map[string]string{"config.yaml": speakerConfig(t, "10.0.0.0/28")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lb", Name: "sec"}, Data: map[string][]byte{"l2-keys": []byte(NewKey() + "\n")}},
	)
	hold := speakerhook.Hold{Path: filepath.Join(t.TempDir(), "hold")}
	if err := hold.Set(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	test := speakerhook.New(speakerhook.Options{Client: client, NodeName: "node1", HoldFile: hold.Path})
	sp := NewSpeaker(Options{Client: client, NodeName: "node1", ConfigPath: config.DefaultPath, Test: test,
		Files: NewKubeFiles(client, "lb", "cfg", "sec"), Callers: tokenIs("tok")})
	go func() { _ = sp.Run(ctx) }()
	srv := httptest.NewServer(sp.Handler())
	defer srv.Close()
	waitFor(t, 5*time.Second, "POST /v1/resume accepted while held", func() bool {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/resume", nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !hold.Until(time.Now()).IsZero() {
		t.Fatal("the hold did not end")
	}
}
