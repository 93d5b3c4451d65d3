package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
)

// TestStolenCredentialsStopNoSpeaker attacks the speakers' /v1/fail on
// the spine bed from the client, a host outside the cluster, with what
// root on node1 or a sniffer on its link can take: the token the
// controller sends node1, the speakers' own ServiceAccount token (in every
// speaker pod's volume), and everything in the speakers' Secret (which
// every speaker reads). Before, one static token from that Secret made
// any node's speaker stop (202 Accepted). Now each is refused by node2's
// speaker (401), and so is node2's own token while node2 carries no
// failover test's mark (403); node2's speaker keeps running, and the
// controller's token for node2 still reads its status.
func TestStolenCredentialsStopNoSpeaker(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{})
	deployUnit(t, b, spineConfig)
	waitSpeakers(t, b, 2)
	ctx := context.Background()
	node2 := spinebed.NodeIP(2)
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		args := []string{"curl", "-s", "--max-time", "5", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", method,
			"-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json"}
		if body != "" {
			args = append(args, "--data", body)
		}
		out, err := b.Net.Exec(b.Client, append(args, fmt.Sprintf("http://%s:9403%s", node2, path))...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var code int
		if _, serr := fmt.Sscan(lines[len(lines)-1], &code); serr != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, out)
		}
		return code, out
	}
	failBody := func(test string) string {
		b, _ := json.Marshal(api.SpeakerFail{Until: time.Now().Add(5 * time.Minute), Test: test})
		return string(b)
	}
	stolen := map[string]string{
		"the controller's token for node1":  speakerToken(t, b, access.ControllerAccount, "node1"),
		"the speakers' own account's token": speakerToken(t, b, access.SpeakerName, "node2"),
	}
	sec, err := b.Kube.CoreV1().Secrets("lb").Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sec.Data {
		stolen["the speakers' Secret's "+k] = strings.TrimSpace(string(v))
	}
	for what, token := range stolen {
		if code, out := call("POST", "/v1/fail", token, failBody("any")); code != 401 {
			t.Errorf("%s stopping node2's speaker: %d, want 401\n%s", what, code, out)
		}
	}
	own := speakerToken(t, b, access.ControllerAccount, "node2")
	if code, out := call("POST", "/v1/fail", own, failBody("any")); code != 403 {
		t.Errorf("node2's own token without a failover test's mark on node2: %d, want 403\n%s", code, out)
	}
	if code, out := call("GET", "/v1/bgp", own, ""); code != 200 || !strings.Contains(out, "established") {
		t.Errorf("the controller's token for node2 reading its status: %d\n%s", code, out)
	}
	if code, out := call("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("node2's speaker after the attacks: /readyz %d\n%s", code, out)
	}
}
