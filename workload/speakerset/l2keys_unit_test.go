package speakerset

import (
	"context"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/kubeapply"
)

// An edit that breaks the heartbeat keys in the speakers' Secret is
// refused: the last good keys go back and the speakers do not roll. A new
// key used to be made, which rolled every speaker into two groups that
// cannot hear each other while the roll lasted.
func TestBrokenL2KeysAreRestored(t *testing.T) {
	ctx := context.Background()
	// The ConfigMap and Secret as `calico-lb access` makes them.
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: access.Meta("lb", access.SpeakerConfigName, nil)}, &corev1.Secret{ObjectMeta: access.Meta("lb", access.SpeakerSecretName, nil)})
	o := config.DefaultOptions()
	o.PeeringMode = "l2"
	o.Pools = "10.0.0.0/24"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BGP.PasswordFile = t.TempDir() + "/none"
	var keys lastKeys
	so := speakerObjects{spec: spec{ns: "lb", port: 9403}, client: client, configRaw: []byte("x"), keys: &keys, log: slog.New(slog.DiscardHandler)}
	if err := so.reconcile(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	secret := func() []byte {
		sec, err := client.CoreV1().Secrets("lb").Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sec.Data[l2KeysKey]
	}
	template := func() string {
		ds, err := client.AppsV1().DaemonSets("lb").Get(ctx, access.SpeakerName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ds.Spec.Template.Annotations[kubeapply.HashKey]
	}
	good, before := secret(), template()
	sec, _ := client.CoreV1().Secrets("lb").Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
	sec.Data[l2KeysKey] = []byte("not a key\n")
	if _, err := client.CoreV1().Secrets("lb").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := so.reconcile(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if got := secret(); string(got) != string(good) {
		t.Fatalf("after a broken edit the Secret holds %q, want the last good keys back", got)
	}
	if after := template(); after != before {
		t.Fatalf("the speakers' pod template changed (%s -> %s): they roll", before, after)
	}
}
