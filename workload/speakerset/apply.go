package speakerset

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/kubeapply"
	"github.com/calico-lb/calico-lb/workload/speaker"
)

// speakerObjects reconciles the speaker DaemonSet and what it needs, in
// namespace ns, for cfg: present in spine and l2 mode, absent in calico
// mode. It creates or updates only what differs.
type speakerObjects struct {
	spec
	client    kubernetes.Interface
	configRaw []byte // the config file, as the speakers read it
	// keys remembers the last heartbeat keys put in the speakers' Secret,
	// across passes and terms, so that an edit that breaks them restores
	// them instead of rolling every speaker with a new key; nil: none.
	keys *lastKeys
	log  *slog.Logger
}

// lastKeys is the heartbeat keys the controller last wrote.
type lastKeys struct {
	mu   sync.Mutex
	keys []byte
}

func (k *lastKeys) get() []byte {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys
}

func (k *lastKeys) set(keys []byte) {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
}

func (s speakerObjects) reconcile(ctx context.Context, cfg *config.Config) error {
	if cfg.Mode == config.ModeCalico {
		return s.remove(ctx)
	}
	have, err := s.secret(ctx)
	if err != nil {
		return err
	}
	passwords, err := os.ReadFile(cfg.BGP.PasswordFile)
	if err != nil && have != nil {
		// Unreadable (or not there yet): keep what the speakers have. An
		// emptied Secret would roll every speaker without its passwords
		// and drop their MD5 sessions.
		passwords = have[bgpPasswordsKey]
	}
	keys, problem := l2KeysOf(have, s.keys.get())
	if problem != "" && s.log != nil {
		s.log.Error(problem)
	}
	s.keys.set(keys)
	labelsSel := speakerLabels()
	objs := []func() error{
		func() error {
			layer, err := SpeakerLayer(s.port, s.ns).Render()
			if err != nil {
				return err
			}
			cm := &corev1.ConfigMap{ObjectMeta: access.Meta(s.ns, access.SpeakerConfigName, labelsSel), Data: map[string]string{
				"config.yaml": string(s.configRaw), speakerLayerKey: string(layer)}}
			return kubeapply.Update(ctx, s.client.CoreV1().ConfigMaps(s.ns), cm, func(have, want *corev1.ConfigMap) {
				have.Data = want.Data
			}, speakerObjectsMaker)
		},
		func() error {
			sec := &corev1.Secret{ObjectMeta: access.Meta(s.ns, access.SpeakerSecretName, labelsSel), Data: map[string][]byte{bgpPasswordsKey: passwords, l2KeysKey: keys}}
			return kubeapply.Update(ctx, s.client.CoreV1().Secrets(s.ns), sec, func(have, want *corev1.Secret) {
				have.Data = want.Data
			}, speakerObjectsMaker)
		},
		func() error {
			ds, err := s.daemonSet(cfg, labelsSel)
			if err != nil {
				return err
			}
			return kubeapply.Apply(ctx, s.client.AppsV1().DaemonSets(s.ns), ds, func(have, want *appsv1.DaemonSet) {
				have.Spec = want.Spec
				have.Annotations = want.Annotations
			})
		},
	}
	for _, f := range objs {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// The speakers' Secret's keys: the BGP passwords and the heartbeat keys.
// (An api-token key from before is dropped: the speakers now ask the
// apiserver whose a token is.)
const (
	bgpPasswordsKey = "bgp-passwords.yaml"
	l2KeysKey       = "l2-keys"
)

// secret returns the data of the speakers' Secret, nil when there is none.
func (s speakerObjects) secret(ctx context.Context) (map[string][]byte, error) {
	sec, err := s.client.CoreV1().Secrets(s.ns).Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
	switch {
	case err == nil:
		if sec.Data == nil {
			return map[string][]byte{}, nil
		}
		return sec.Data, nil
	case apierrors.IsNotFound(err):
		return nil, nil
	}
	return nil, fmt.Errorf("read the speakers' Secret: %w", err)
}

// l2KeysOf returns the heartbeat keys for the speakers' Secret: the ones
// it holds when they parse, made once and kept across restarts and
// leadership changes. Keys someone broke by hand are refused, loudly: the
// last good ones (last) go back, since a new key would roll every speaker
// and, while the roll lasts, split them into two groups that cannot hear
// each other, each owning every IP. Only with no good keys known (the
// Secret is new, or the keys were deleted) is a new key made. problem
// says what was refused, "" when nothing was.
func l2KeysOf(have map[string][]byte, last []byte) (keys []byte, problem string) {
	cur, present := have[l2KeysKey]
	_, err := speaker.ParseL2Keys(cur)
	switch {
	case err == nil:
		return cur, ""
	case present && last != nil:
		return last, fmt.Sprintf("the speakers' Secret %s holds l2-keys that do not parse (%v): restored the last good keys; to rotate them, add the new key as a second line, and move it first once every speaker has it", access.SpeakerSecretName, err)
	case present:
		return []byte(speaker.NewKey() + "\n"), fmt.Sprintf("the speakers' Secret %s holds l2-keys that do not parse (%v) and no good keys are known: made a new key, which rolls every speaker", access.SpeakerSecretName, err)
	}
	return []byte(speaker.NewKey() + "\n"), ""
}

// remove deletes the speakers and what they needed.
func (s speakerObjects) remove(ctx context.Context) error {
	if err := kubeapply.Delete(func() error {
		return s.client.AppsV1().DaemonSets(s.ns).Delete(ctx, access.SpeakerName, metav1.DeleteOptions{})
	}); err != nil {
		return err
	}
	// The ConfigMap and Secret are the charm's to delete (with the
	// application); emptied, no password outlives the speakers.
	for _, f := range []func() error{
		func() error {
			return kubeapply.Update(ctx, s.client.CoreV1().ConfigMaps(s.ns), &corev1.ConfigMap{ObjectMeta: access.Meta(s.ns, access.SpeakerConfigName, nil)},
				func(have, want *corev1.ConfigMap) { have.Data = nil }, speakerObjectsMaker)
		},
		func() error {
			return kubeapply.Update(ctx, s.client.CoreV1().Secrets(s.ns), &corev1.Secret{ObjectMeta: access.Meta(s.ns, access.SpeakerSecretName, nil)},
				func(have, want *corev1.Secret) { have.Data = nil }, speakerObjectsMaker)
		},
	} {
		if err := f(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// speakerObjectsMaker is who creates the speakers' ConfigMap and Secret.
const speakerObjectsMaker = "the charm (`calico-lb access`, run on every hook with Juju's trust)"
