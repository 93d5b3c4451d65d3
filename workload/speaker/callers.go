package speaker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Callers decides who may use the status API's /v1/ paths.
type Callers interface {
	// Check returns nil when token is the controller's, meant for this
	// node, and an error saying why not otherwise.
	Check(ctx context.Context, token string) error
}

// errNoCaller refuses every caller: a speaker started without
// --controller-account serves /v1/ to nobody.
type errNoCaller struct{}

func (errNoCaller) Check(context.Context, string) error {
	return errors.New("this speaker accepts no caller (it runs without --controller-account)")
}

// TokenReviews accepts the controller's ServiceAccount tokens for this
// node's audience (api.SpeakerAudience), as the apiserver vouches for them
// (TokenReview). There is no shared secret to steal: a token taken from
// one node (its traffic or its disk) is for that node alone, for at most
// the ten minutes the controller asks, and not for the apiserver.
//
// Tokens that cannot be the controller's for this node (not a JWT, another
// audience, expired) are refused without asking; the apiserver is asked
// at most a few times a second, and a vouched token is trusted for a
// minute (or until it expires).
type TokenReviews struct {
	client   kubernetes.Interface
	audience string
	user     string
	now      func() time.Time
	limit    *rate.Limiter

	mu      sync.Mutex // guards trusted; not held while asking the apiserver
	trusted map[[32]byte]time.Time
}

// trustFor is how long a vouched token is trusted without asking again.
const trustFor = time.Minute

// NewTokenReviews accepts tokens of the ServiceAccount account
// ("namespace/name") for node.
func NewTokenReviews(client kubernetes.Interface, node, account string) (*TokenReviews, error) {
	ns, name, ok := strings.Cut(account, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--controller-account %q: want namespace/name of the controller's ServiceAccount", account)
	}
	return &TokenReviews{client: client, audience: api.SpeakerAudience(node), user: "system:serviceaccount:" + ns + ":" + name,
		now: time.Now, limit: rate.NewLimiter(5, 10), trusted: map[[32]byte]time.Time{}}, nil
}

// Check implements Callers.
func (t *TokenReviews) Check(ctx context.Context, token string) error {
	if token == "" {
		return errors.New("a bearer token is needed")
	}
	now := t.now()
	key := sha256.Sum256([]byte(token))
	t.mu.Lock()
	until, ok := t.trusted[key]
	t.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	exp, err := t.plausible(token, now)
	if err != nil {
		return err
	}
	if !t.limit.Allow() {
		return errors.New("too many new tokens: try again in a second")
	}
	r, err := t.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{
		Token: token, Audiences: []string{t.audience}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("the apiserver could not check the token: %w", err)
	}
	switch st := r.Status; {
	case !st.Authenticated:
		return fmt.Errorf("the apiserver does not vouch for the token: %s", st.Error)
	case !slices.Contains(st.Audiences, t.audience):
		return fmt.Errorf("the token is not for %s", t.audience)
	case st.User.Username != t.user:
		return fmt.Errorf("the token is %s's, not the controller's (%s)", st.User.Username, t.user)
	}
	if until = now.Add(trustFor); exp.Before(until) {
		until = exp
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, u := range t.trusted {
		if !now.Before(u) {
			delete(t.trusted, k)
		}
	}
	if len(t.trusted) < 64 {
		t.trusted[key] = until
	}
	return nil
}

// plausible reads the token's claims without trusting them (the apiserver
// does that), to refuse at once what cannot be for this node, and returns
// when it expires.
func (t *TokenReviews) plausible(token string, now time.Time) (time.Time, error) {
	notJWT := errors.New("the bearer token is not a ServiceAccount token (a JWT)")
	if len(token) > 16<<10 {
		return time.Time{}, notJWT
	}
	c, err := api.ReadTokenClaims(token)
	if err != nil {
		return time.Time{}, notJWT
	}
	if !slices.Contains(c.Audiences, t.audience) {
		return time.Time{}, fmt.Errorf("the token is not for %s", t.audience)
	}
	exp := time.Unix(c.Expires, 0)
	if !now.Before(exp) {
		return time.Time{}, errors.New("the token has expired")
	}
	return exp, nil
}
