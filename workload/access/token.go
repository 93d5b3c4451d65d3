package access

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/api"
)

// TokenTTL is how long a token of the controller's ServiceAccount lives.
// Short, as the kubelet's own Pod tokens are: the controller renews it
// itself at half-life, and the charm on every hook.
const TokenTTL = time.Hour

// readClaims reads the controller's own token's claims, to know when to
// renew it.
func readClaims(token string) (api.TokenClaims, error) {
	c, err := api.ReadTokenClaims(token)
	if err != nil {
		return c, err
	}
	if c.Expires <= c.IssuedAt {
		return c, errors.New("JWT without a lifetime")
	}
	return c, nil
}

// TokenFile is where the controller's token is kept, and who owns it.
type TokenFile struct {
	Path string
	// Owner, when set, owns the file and its directory (the controller's
	// user, when root writes it for the controller to renew).
	Owner *int
}

// Fresh says whether the file holds a token with more than half its life
// left at now, issued to the ServiceAccount with UID uid ("" for any).
func (f TokenFile) Fresh(now time.Time, uid string) bool {
	half, c, err := f.halfLife()
	if err != nil || (uid != "" && c.K8s.ServiceAccount.UID != uid) {
		return false
	}
	return now.Before(half)
}

// RenewAt is when the token in the file is past half its life and due
// for renewal.
func (f TokenFile) RenewAt() (time.Time, error) {
	half, _, err := f.halfLife()
	return half, err
}

func (f TokenFile) halfLife() (time.Time, api.TokenClaims, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return time.Time{}, api.TokenClaims{}, err
	}
	c, err := readClaims(string(data))
	if err != nil {
		return time.Time{}, c, err
	}
	return time.Unix(c.IssuedAt+(c.Expires-c.IssuedAt)/2, 0), c, nil
}

// Renew asks the apiserver for a new token of the controller's
// ServiceAccount and writes it, atomically: client-go rereads the file
// every minute and must never see half a token.
func (f TokenFile) Renew(ctx context.Context, client kubernetes.Interface, a Access, ttl time.Duration) error {
	secs := int64(ttl / time.Second)
	tr, err := client.CoreV1().ServiceAccounts(a.Namespace).CreateToken(ctx, ControllerAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for ServiceAccount %s/%s: %w", a.Namespace, ControllerAccount, err)
	}
	return f.write([]byte(tr.Status.Token))
}

func (f TokenFile) write(token []byte) error {
	return writeAtomic(f.Path, token, 0o700, 0o600, f.Owner)
}

// writeAtomic writes data to path through a temporary file renamed over
// it, so that no reader ever sees half of it: the file gets fileMode, a
// missing directory dirMode, and both owner when it is set.
func writeAtomic(path string, data []byte, dirMode, fileMode os.FileMode, owner *int) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if owner != nil {
		for _, p := range []string{dir, tmp.Name()} {
			if err := os.Chown(p, *owner, *owner); err != nil {
				return err
			}
		}
	}
	return os.Rename(tmp.Name(), path)
}

// KeepToken renews the token whenever it is past half its life, until ctx
// ends; the controller runs it with its own client. Failures are logged by
// the caller through report and retried at the next tick: the token in
// hand stays good for the other half of its life.
func (f TokenFile) KeepToken(ctx context.Context, client kubernetes.Interface, a Access, ttl, every time.Duration, report func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if !f.Fresh(time.Now(), "") {
			report(f.Renew(ctx, client, a, ttl))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
