// Command flood is `make bench-flood`: whether a flood of UDP from a host
// that is not a speaker (the client of the beds, as a pod or any host that
// reaches the nodes would) makes the speakers lose what keeps VIPs in
// place, on real nodes with calico-lb deployed as Juju deploys it:
//
//   - l2 (three nodes on one segment): the speakers' heartbeat port, UDP
//     7947, flooded with heartbeat-shaped packets signed with a wrong key
//     and with garbage. Counted: ownership changes (a false failover moves
//     an IP), the client's failed requests to the VIP (every 10 ms, each
//     limited to 100 ms) and the refusals by reason, so that the flood is
//     seen to arrive.
//   - spine (two nodes, FRR with BFD 100 ms x 3): the BFD port, UDP 3784,
//     flooded the same way. Counted: BFD session downs at FRR and the
//     client's failed requests.
//
// Each phase runs first quiet, then flooded, for the same time, and prints
//
//	flood-l2 phase=quiet|flood sent_pps=… refused_source=… refused_unauthentic=… ownership_changes=… client_failed=…/…
//	flood-bfd phase=quiet|flood sent_pps=… bfd_downs=… client_failed=…/…
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/promrules"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

func main() {
	d := flag.Duration("for", time.Minute, "how long each phase (quiet, flooded) lasts")
	only := flag.String("only", "", "l2 or bfd: run that part alone")
	flag.Parse()
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		fmt.Fprintln(os.Stderr, "bench-flood needs:", m, "(run as root after `make deps`)")
		os.Exit(1)
	}
	ctx := context.Background()
	for _, part := range []struct {
		name string
		run  func(context.Context, time.Duration) error
	}{{"l2", l2}, {"bfd", bfd}} {
		if *only != "" && *only != part.name {
			continue
		}
		if err := part.run(ctx, *d); err != nil {
			fmt.Fprintf(os.Stderr, "bench-flood (%s): %v\n", part.name, err)
			os.Exit(1)
		}
	}
}

func l2(ctx context.Context, d time.Duration) error {
	b, err := spinebed.StartL2(ctx, spinebed.Options{Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer b.Close()
	vip, err := deploy(ctx, b, map[string]any{"pools": "10.214.0.100-10.214.0.120", "peering-mode": "l2"}, 3)
	if err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // hold-down and settling
	metrics := func() map[string]float64 {
		sum := map[string]float64{}
		for _, ip := range b.NodeIPs {
			for k, v := range scrape(b.Client, ip) {
				sum[k] += v
			}
		}
		return sum
	}
	for _, flood := range []bool{false, true} {
		before := metrics()
		sent, failed, asked := phase(ctx, b.Client, vip, b.NodeIPs, 7947, l2Packets(), flood, d)
		after := metrics()
		delta := func(k string) float64 { return after[k] - before[k] }
		fmt.Printf("flood-l2 phase=%s sent_pps=%.0f refused_source=%.0f refused_unauthentic=%.0f ownership_changes=%.0f client_failed=%d/%d\n",
			map[bool]string{false: "quiet", true: "flood"}[flood], float64(sent)/d.Seconds(),
			delta(metricKey("calico_lb_l2_heartbeats_rejected_total", "source")), delta(metricKey("calico_lb_l2_heartbeats_rejected_total", "unauthentic")),
			delta("calico_lb_l2_ownership_changes_total"), failed, asked)
	}
	return nil
}

func bfd(ctx context.Context, d time.Duration) error {
	b, err := spinebed.Start(ctx, spinebed.Options{BFD: true, Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer b.Close()
	for i := range b.Nodes {
		name := fmt.Sprint("node", i+1)
		n, err := b.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels["rack"] = "bench"
		if _, err := b.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	const peer = "{address: 10.212.%d.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}"
	vip, err := deploy(ctx, b, map[string]any{"pools": "10.212.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
		"subnet-spine-peers":    "{10.212.1.0/24: [" + fmt.Sprintf(peer, 1) + "], 10.212.2.0/24: [" + fmt.Sprintf(peer, 2) + "]}",
		"speaker-node-selector": "rack=bench"}, 2)
	if err != nil {
		return err
	}
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool { return bfdUp(b) == len(b.Nodes) }); err != nil {
		return fmt.Errorf("BFD sessions up at FRR: %d of %d", bfdUp(b), len(b.Nodes))
	}
	for _, flood := range []bool{false, true} {
		before, err := b.BFDDowns()
		if err != nil {
			return err
		}
		sent, failed, asked := phase(ctx, b.Client, vip, b.NodeIPs, 3784, bfdPackets(), flood, d)
		after, err := b.BFDDowns()
		if err != nil {
			return err
		}
		fmt.Printf("flood-bfd phase=%s sent_pps=%.0f bfd_downs=%d bfd_up=%d/%d client_failed=%d/%d\n",
			map[bool]string{false: "quiet", true: "flood"}[flood], float64(sent)/d.Seconds(), after-before, bfdUp(b), len(b.Nodes), failed, asked)
	}
	return nil
}

// deploy deploys calico-lb with cfg as Juju deploys it, waits for a
// speaker on every node, and deploys the test application with replicas
// pods behind Service bench/web; it returns the VIP once the client gets
// answers from it.
func deploy(ctx context.Context, b *spinebed.Bed, cfg map[string]any, replicas int) (string, error) {
	kb := b.Kubebed
	if _, err := kb.Deploy(ctx, "lb", cfg); err != nil {
		return "", err
	}
	if _, err := kb.WaitSpeakers(ctx, "lb", len(b.Nodes), 3*time.Minute); err != nil {
		return "", err
	}
	if _, err := kb.Echo(ctx, kubebed.App{NS: "bench", Name: "web", Replicas: replicas}); err != nil {
		return "", err
	}
	vip, err := b.WaitIP("bench", "web", 30*time.Second)
	if err != nil {
		return "", err
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := kubebed.Ask(b.Client, vip, time.Second); return err == nil }); err != nil {
		return "", fmt.Errorf("VIP %s unreachable", vip)
	}
	return vip, nil
}

// phase runs a client against vip for d (a request every 10 ms, each
// limited to 100 ms) and, if flood, two senders per target from the same
// namespace sending packets to port as fast as they can. It returns the
// packets sent and the client's failed and total requests.
func phase(ctx context.Context, ns, vip string, targets []string, port int, packets [][]byte, flood bool, d time.Duration) (sent int64, failed, asked int) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		wg    sync.WaitGroup
		count atomic.Int64
	)
	if flood {
		for _, ip := range targets {
			for range 2 {
				conn, err := netns.Dialer(ns, time.Second)(ctx, "udp", net.JoinHostPort(ip, fmt.Sprint(port)))
				if err != nil {
					fmt.Fprintln(os.Stderr, "flood:", err)
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					for i := 0; ctx.Err() == nil; i++ {
						// Errors (ECONNREFUSED from an earlier ICMP, a full
						// queue) are part of a flood: go on.
						if _, err := conn.Write(packets[i%len(packets)]); err == nil {
							count.Add(1)
						}
					}
				}()
			}
		}
	}
	for ctx.Err() == nil {
		at := time.Now()
		if _, err := kubebed.Ask(ns, vip, 100*time.Millisecond); err != nil {
			failed++
		}
		asked++
		time.Sleep(time.Until(at.Add(10 * time.Millisecond)))
	}
	wg.Wait()
	return count.Load(), failed, asked
}

// l2Packets are heartbeat-shaped packets signed with a key nobody holds,
// and garbage.
func l2Packets() [][]byte {
	var out [][]byte
	for i := range 64 {
		mac := make([]byte, 32)
		_, _ = rand.Read(mac)
		out = append(out, fmt.Appendf(nil, "CLB3 node%d 1 1 0 %d 1 0123456789abcdef - %x", i%3+1, i, mac))
		junk := make([]byte, 120)
		_, _ = rand.Read(junk)
		out = append(out, junk)
	}
	return out
}

// bfdPackets are BFD control packets (RFC 5880, version 1, state Down,
// 24 bytes) with discriminators nobody uses, and garbage.
func bfdPackets() [][]byte {
	var out [][]byte
	for range 64 {
		p := []byte{0x20, 0x40, 3, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 0, 0, 0, 0}
		_, _ = rand.Read(p[4:8])
		out = append(out, p)
		junk := make([]byte, 60)
		_, _ = rand.Read(junk)
		out = append(out, junk)
	}
	return out
}

// scrape reads a speaker's L2 counters from its /metrics (open to anyone
// who reaches the node), keyed by name and, for the refusals, reason.
func scrape(ns, nodeIP string) map[string]float64 {
	out := map[string]float64{}
	resp, err := netns.HTTPClient(ns, 2*time.Second).Get("http://" + net.JoinHostPort(nodeIP, "9403") + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return out
	}
	series, _ := promrules.FromScrape(string(body), "calico_lb_l2_", nil)
	for _, s := range series {
		out[metricKey(s.Labels["__name__"], s.Labels["reason"])] += s.Value
	}
	return out
}

// metricKey names a counter and, if it has one, its reason label.
func metricKey(name, reason string) string {
	if reason == "" {
		return name
	}
	return name + "/" + reason
}

func bfdUp(b *spinebed.Bed) int {
	out, err := b.FRR.Vtysh("-c", "show bfd peers json")
	if err != nil {
		return 0
	}
	var peers []map[string]any
	_ = json.Unmarshal([]byte(out), &peers)
	n := 0
	for _, p := range peers {
		if p["status"] == "up" {
			n++
		}
	}
	return n
}
