package speakerclient

import (
	"context"
	"fmt"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
)

// speakerTokenTTL is how long a token the controller presents to a
// speaker lives: the shortest the apiserver issues.
const speakerTokenTTL = 10 * time.Minute

// Tokens mints the bearer tokens the controller presents to the
// speakers: its own ServiceAccount's, each for one node's audience
// (api.SpeakerAudience) and ten minutes. A token taken on the wire to one
// node, or on that node, works on no other node and not on the apiserver,
// and is soon useless; the speakers ask the apiserver (TokenReview) whose
// it is. Tokens are reused for half their life.
type Tokens struct {
	client kubernetes.Interface
	ns     string
	now    func() time.Time

	mu    sync.Mutex // guards held; not held while asking the apiserver
	held  map[string]heldToken
	limit int // at most this many nodes' tokens are kept
}

type heldToken struct {
	token string
	renew time.Time
}

// NewTokens mints tokens of the controller's ServiceAccount in ns.
func NewTokens(client kubernetes.Interface, ns string) *Tokens {
	return &Tokens{client: client, ns: ns, now: time.Now, held: map[string]heldToken{}, limit: 4096}
}

// ForNode returns a token node's speaker accepts.
func (t *Tokens) ForNode(ctx context.Context, node string) (string, error) {
	now := t.now()
	t.mu.Lock()
	h, ok := t.held[node]
	t.mu.Unlock()
	if ok && now.Before(h.renew) {
		return h.token, nil
	}
	secs := int64(speakerTokenTTL / time.Second)
	tr, err := t.client.CoreV1().ServiceAccounts(t.ns).CreateToken(ctx, access.ControllerAccount, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{api.SpeakerAudience(node)}, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("a token for the speaker on %s (ServiceAccount %s/%s): %w", node, t.ns, access.ControllerAccount, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.held) >= t.limit {
		for n, h := range t.held {
			if !now.Before(h.renew) {
				delete(t.held, n)
			}
		}
	}
	if len(t.held) < t.limit {
		t.held[node] = heldToken{token: tr.Status.Token, renew: now.Add(speakerTokenTTL / 2)}
	}
	return tr.Status.Token, nil
}
