package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestWindows(t *testing.T) {
	ok := func(at int) Attempt { return Attempt{At: ms(at), OK: true} }
	bad := func(at int) Attempt { return Attempt{At: ms(at), Err: "refused"} }
	for _, tc := range []struct {
		name      string
		in        []Attempt
		want      []Window
		answering bool
	}{
		{"none", nil, []Window{}, false},
		{"all answer", []Attempt{ok(0), ok(10), ok(20)}, []Window{}, true},
		{"one lost attempt is two intervals", []Attempt{ok(0), bad(10), ok(20)}, []Window{{From: ms(0), To: ms(20), Failures: 1, Reason: "refused"}}, true},
		{"two outages", []Attempt{ok(0), bad(10), bad(20), ok(30), ok(40), bad(50), ok(60)},
			[]Window{{From: ms(0), To: ms(30), Failures: 2, Reason: "refused"}, {From: ms(40), To: ms(60), Failures: 1, Reason: "refused"}}, true},
		{"still out", []Attempt{ok(0), bad(10), bad(20)}, []Window{{From: ms(0), Failures: 2, Reason: "refused"}}, false},
		{"never answered before", []Attempt{bad(0), bad(10), ok(20)}, []Window{{From: ms(0), To: ms(20), Failures: 2, Reason: "refused"}}, true},
	} {
		s := Windows(tc.in)
		if len(s.Windows) != len(tc.want) || s.Answering != tc.answering {
			t.Fatalf("%s: %+v", tc.name, s)
		}
		for i := range tc.want {
			if s.Windows[i] != tc.want[i] {
				t.Fatalf("%s: window %d %+v, want %+v", tc.name, i, s.Windows[i], tc.want[i])
			}
		}
	}
}

// TestRecordSettles: a success does not close a window while an attempt
// that started earlier is still in flight (it may yet fail).
func TestRecordSettles(t *testing.T) {
	r := NewRecord()
	r.Done(Attempt{At: 0, OK: true})
	r.Begin(ms(10))
	r.Begin(ms(20))
	r.Done(Attempt{At: ms(20), OK: true})
	if s := r.Summary(ms(30)); s.Attempts != 1 || s.Settled != ms(10) {
		t.Fatalf("with 10 ms in flight: %+v", s)
	}
	r.Done(Attempt{At: ms(10), Err: "timeout"})
	s := r.Summary(ms(30))
	if s.Attempts != 3 || len(s.Windows) != 1 || s.Windows[0].Duration() != ms(20) || !s.Answering {
		t.Fatalf("settled: %+v", s)
	}
}

// TestAgentMeasuresAnOutage: a real listener on loopback goes away for a
// while; the agent's window covers that time, give or take its interval.
func TestAgentMeasuresAnOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	go accept(ln)
	srv := httptest.NewServer((&Agent{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Token: testToken}).Handler())
	defer srv.Close()
	c := Client{Base: srv.URL, Token: testToken}
	ctx := context.Background()
	st, err := c.Start(ctx, Request{Target: target, ForMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	_ = ln.Close()
	down := time.Now()
	time.Sleep(300 * time.Millisecond)
	if ln, err = net.Listen("tcp", target); err != nil {
		t.Fatal(err)
	}
	out := time.Since(down)
	defer ln.Close()
	go accept(ln)
	time.Sleep(200 * time.Millisecond)
	r, err := c.Stop(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Summary
	if !r.Ended || len(s.Windows) != 1 || s.Attempts < 40 {
		t.Fatalf("report: %+v", r)
	}
	w := s.Windows[0]
	t.Logf("listener away %s; probe window %s (%d attempts failed: %s)", out.Round(time.Millisecond), w.Duration(), w.Failures, w.Reason)
	if w.Duration() < out-ms(20) || w.Duration() > out+ms(150) {
		t.Fatalf("window %s for an outage of %s", w.Duration(), out)
	}
	// A listener closed while a connection is being made answers with a
	// reset instead of a refusal, now and then: both say it was away.
	if !strings.Contains(w.Reason, "refused") && !strings.Contains(w.Reason, "reset by peer") {
		t.Fatalf("reason %q", w.Reason)
	}
	// The window falls where the outage did, on our clock.
	if at := st.At(w.From); at.Before(down.Add(-ms(50))) || at.After(down.Add(ms(20))) {
		t.Fatalf("window starts at %s, the listener closed at %s", at.Format(time.StampMilli), down.Format(time.StampMilli))
	}
}

func accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

func TestAgentRefuses(t *testing.T) {
	a := &Agent{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Token: testToken}
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Target: "10.0.0.5", ForMs: 1000}, "want ip:port"},
		{Request{Target: "web:80", ForMs: 1000}, "not an IP address"},
		{Request{Target: "10.0.1.5:80", ForMs: 1000}, "outside the ranges"},
		{Request{Target: "10.0.0.5:http2x", ForMs: 1000}, "not a TCP port"},
		{Request{Target: "10.0.0.5:80", ForMs: 1000, IntervalMs: 1}, "intervalMs"},
		{Request{Target: "10.0.0.5:80", ForMs: 1000, IntervalMs: 9}, "intervalMs"},
		{Request{Target: "10.0.0.5:80", ForMs: 1000, TimeoutMs: int(MaxTimeout.Milliseconds()) + 1}, "timeoutMs"},
		{Request{Target: "10.0.0.5:80"}, "forMs"},
		{Request{Target: "10.0.0.5:80", ForMs: int(MaxFor.Milliseconds()) + 1}, "forMs"},
	} {
		if err := a.Check(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}
	if err := a.Check(Request{Target: "10.0.0.5:80", ForMs: 1000}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	c := Client{Base: srv.URL, Token: testToken}
	ctx := context.Background()
	for range maxRuns {
		if _, err := c.Start(ctx, Request{Target: "10.0.0.5:80", ForMs: 2000, IntervalMs: 1000, TimeoutMs: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Start(ctx, Request{Target: "10.0.0.5:80", ForMs: 2000}); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("a fifth run: %v", err)
	}
	if _, err := c.Get(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown run: %v", err)
	}
	bad, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/probes", strings.NewReader("{"))
	bad.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(bad)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad body: %d", resp.StatusCode)
	}
}

// FuzzCheck: no request body makes the agent panic, and what it accepts
// is inside what it allows.
func FuzzCheck(f *testing.F) {
	f.Add("10.0.0.5:80", 10, 500, 1000)
	f.Add("[fd00::1]:443", 0, 0, 1)
	f.Add("::ffff:10.0.0.1:80", -1, -1, -1)
	a := &Agent{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/120")}}
	f.Fuzz(func(t *testing.T, target string, interval, timeout, forMs int) {
		if a.Check(Request{Target: target, IntervalMs: interval, TimeoutMs: timeout, ForMs: forMs}) != nil {
			return
		}
		host, _, _ := net.SplitHostPort(target)
		ip := netip.MustParseAddr(host).Unmap()
		if !a.Allow[0].Contains(ip) && !a.Allow[1].Contains(ip) {
			t.Fatalf("accepted %q outside the allowed ranges", target)
		}
	})
}

// However long the target keeps connections hanging, a run holds at most
// MaxInFlight attempts open at once.
func TestRunBoundsAttemptsInFlight(t *testing.T) {
	var mu sync.Mutex
	open, most := 0, 0
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		mu.Lock()
		open++
		most = max(most, open)
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		open--
		mu.Unlock()
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rec := NewRecord()
	Run(ctx, "10.0.0.5:80", time.Millisecond, time.Second, hang, rec)
	if most != MaxInFlight {
		t.Fatalf("at most %d attempts open at once, want %d", most, MaxInFlight)
	}
}

const testToken = "probe-token-for-tests"

// Only a caller with the agent's token starts, reads or stops runs: a
// pod or host that reaches the agent cannot make it connect anywhere or
// read what it measured. /healthz stays open.
func TestAgentWantsItsToken(t *testing.T) {
	srv := httptest.NewServer((&Agent{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Token: testToken}).Handler())
	defer srv.Close()
	ctx := context.Background()
	req := Request{Target: "10.0.0.5:80", ForMs: 100, IntervalMs: 1000, TimeoutMs: 1}
	for _, token := range []string{"", "wrong", testToken + "x", testToken[:len(testToken)-1]} {
		_, err := Client{Base: srv.URL, Token: token}.Start(ctx, req)
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "probe-token") {
			t.Fatalf("token %q: %v, want 401 naming probe-token", token, err)
		}
	}
	started, err := Client{Base: srv.URL, Token: testToken}.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (Client{Base: srv.URL, Token: "wrong"}).Stop(ctx, started.ID); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("stop with the wrong token: %v", err)
	}
	if _, err := (Client{Base: srv.URL, Token: testToken}).Stop(ctx, started.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	// An agent without a token refuses everyone.
	none := httptest.NewServer((&Agent{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}).Handler())
	defer none.Close()
	if _, err := (Client{Base: none.URL}).Start(ctx, req); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("an agent without a token: %v", err)
	}
}
