package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/rock"
)

const spineCfg = `mode: spine
pools:
  p: {addresses: [10.96.200.0/28]}
bgp:
  peers: [{address: 10.0.255.1, as-number: 65100}]
`

// waitDaemonSet waits until the controller has made the speaker DaemonSet.
func (e *env) waitDaemonSet() *appsv1.DaemonSet {
	e.t.Helper()
	var ds *appsv1.DaemonSet
	waitUntil(e.t, "the speaker DaemonSet exists", func() bool {
		var err error
		ds, err = e.client.AppsV1().DaemonSets(e.ns).Get(context.Background(), access.SpeakerName, metav1.GetOptions{})
		return err == nil
	})
	return ds
}

func TestSpeakerDaemonSet(t *testing.T) {
	e := newEnv(t)
	e.config(spineCfg)
	r := e.start("a", func(o *Options) { o.SpeakerImage, o.SpeakerHandOver = "example.com/calico-lb:test", 2*time.Second })
	ctx := context.Background()
	ds := e.waitDaemonSet()
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if !pod.HostNetwork || pod.ServiceAccountName != access.SpeakerName || c.Image != "example.com/calico-lb:test" || !slices.Equal(c.Command, []string{"/usr/bin/pebble", "enter", "--create-dirs", "--verbose"}) ||
		c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" || !slices.Equal(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		len(c.SecurityContext.Capabilities.Add) != 0 || pod.Affinity != nil ||
		len(c.Ports) != 1 || c.Ports[0].HostPort != 9403 || c.Ports[0].ContainerPort != 9403 || c.ReadinessProbe.HTTPGet.Port.IntValue() != 9403 {
		t.Fatalf("speaker pod spec: %+v", pod)
	}
	// Spine speakers need no privilege: the image's unprivileged user.
	if sc := c.SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != rock.UID || sc.RunAsGroup == nil || *sc.RunAsGroup != rock.UID || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Fatalf("spine speaker runs as %v/%v (non-root %v), want %d", sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot, rock.UID)
	}
	// Hardened: the runtime's default seccomp profile, and no blanket
	// toleration (a node tainted to keep workloads off gets no speaker).
	if sp := c.SecurityContext.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("speaker seccomp profile %+v, want RuntimeDefault", sp)
	}
	for _, tol := range pod.Tolerations {
		if tol.Key == "" {
			t.Fatalf("a toleration of every taint: %+v", tol)
		}
	}
	// Bounded: a memory limit (which Go's collector is told of) and a CPU
	// request, no CPU limit (throttling would delay BFD).
	if mem := c.Resources.Limits.Memory(); mem.IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || !c.Resources.Limits.Cpu().IsZero() {
		t.Fatalf("speaker resources %+v", c.Resources)
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }); i < 0 || c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
		t.Fatalf("speaker env %+v: no GOMEMLIMIT from the memory limit", c.Env)
	}
	cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(ctx, access.SpeakerConfigName, metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["config.yaml"], "mode: spine") || !strings.Contains(cm.Data["config.yaml"], "10.0.255.1") ||
		!strings.Contains(cm.Data["pebble-layer.yaml"], "command: /usr/bin/calico-lb speaker --config /etc/calico-lb/config.yaml --namespace "+e.ns+" --configmap calico-lb-speaker-config --secret calico-lb-bgp-passwords --api-address :9403") {
		t.Fatalf("speaker config map: %v %v", cm, err)
	}
	// Pebble finds the layer in its layers directory, and may write its state.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name + ":" + m.SubPath
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if mounts[env["PEBBLE"]+"/layers/001-speaker.yaml"] != "config:pebble-layer.yaml" || mounts[env["PEBBLE"]] != "pebble:" {
		t.Fatalf("mounts %v, PEBBLE=%q", mounts, env["PEBBLE"])
	}

	// Least privilege: the speaker reads Services, EndpointSlices and
	// Nodes, and its own ConfigMap and Secret by name, and nothing else.
	sa := "system:serviceaccount:" + e.ns + ":" + access.SpeakerName
	for _, tc := range []struct {
		group, resource, verb string
		allowed               bool
		ns, name              string
	}{
		{"", "services", "list", true, "default", ""}, {"", "services", "watch", true, "default", ""}, {"", "nodes", "get", true, "", ""},
		{"discovery.k8s.io", "endpointslices", "watch", true, "default", ""},
		{"", "services", "update", false, "default", ""}, {"", "services", "update/status", false, "default", ""}, {"", "secrets", "get", false, "default", ""},
		{"", "pods", "create", false, "default", ""}, {"", "configmaps", "list", false, "default", ""},
		{"", "configmaps", "watch", true, e.ns, access.SpeakerConfigName}, {"", "secrets", "watch", true, e.ns, access.SpeakerSecretName},
		{"", "secrets", "get", false, e.ns, ""}, {"", "secrets", "list", false, e.ns, ""}, {"", "secrets", "update", false, e.ns, access.SpeakerSecretName},
		{"", "configmaps", "get", false, e.ns, "kube-root-ca.crt"}, {"", "secrets", "get", false, "default", access.SpeakerSecretName},
	} {
		verb, sub, _ := strings.Cut(tc.verb, "/")
		sar := &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{User: sa, Groups: []string{"system:serviceaccounts"},
			ResourceAttributes: &authv1.ResourceAttributes{Group: tc.group, Resource: tc.resource, Subresource: sub, Verb: verb, Namespace: tc.ns, Name: tc.name}}}
		got, err := e.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tc.allowed {
			t.Errorf("speaker %s %s/%s %s/%s: allowed=%v, want %v", tc.verb, tc.group, tc.resource, tc.ns, tc.name, got.Status.Allowed, tc.allowed)
		}
	}

	// A config change updates the DaemonSet in place: l2 mode adds NET_RAW,
	// and the node selector becomes node affinity.
	e.config("mode: l2\nspeakers: {node-selector: 'rack in (a,b),!excluded'}\npools:\n  p: {addresses: [10.96.200.0/28]}\n")
	var updated *appsv1.DaemonSet
	waitUntil(t, "the DaemonSet follows the config", func() bool {
		updated, err = e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
		return err == nil && updated.Spec.Template.Spec.Affinity != nil
	})
	if updated.UID != ds.UID {
		t.Fatal("the DaemonSet was re-created rather than updated")
	}
	sc := updated.Spec.Template.Spec.Containers[0].SecurityContext
	caps := sc.Capabilities
	terms := updated.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if !slices.Equal(caps.Add, []corev1.Capability{"NET_RAW"}) || sc.RunAsUser != nil || sc.RunAsNonRoot != nil || len(terms[0].MatchExpressions) != 2 ||
		terms[0].MatchExpressions[0].Operator != corev1.NodeSelectorOpDoesNotExist && terms[0].MatchExpressions[1].Operator != corev1.NodeSelectorOpDoesNotExist {
		t.Fatalf("l2 DaemonSet: caps %+v, affinity %+v", caps, terms)
	}

	// calico mode needs no speakers: everything goes, once the speakers
	// have announced for the hand-over (2 s here) while Calico takes over.
	e.config("mode: calico\npools:\n  p: {addresses: [10.96.200.0/28]}\n")
	switched := time.Now()
	waitUntil(t, "the controller takes calico mode", func() bool {
		cfg := r.c.cfg.Load()
		return cfg != nil && cfg.Mode == config.ModeCalico
	})
	time.Sleep(time.Second)
	if _, err := e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{}); err != nil {
		t.Fatalf("the speakers went %s after the switch to calico, inside the hand-over: %v", time.Since(switched), err)
	}
	waitUntil(t, "the speakers are removed", func() bool {
		_, err := e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// Their ConfigMap and Secret are the charm's (calico-lb access) and
	// stay, emptied: no password outlives the speakers.
	waitUntil(t, "the speakers' ConfigMap and Secret are emptied", func() bool {
		cm, err1 := e.client.CoreV1().ConfigMaps(e.ns).Get(ctx, access.SpeakerConfigName, metav1.GetOptions{})
		sec, err2 := e.client.CoreV1().Secrets(e.ns).Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
		return err1 == nil && err2 == nil && len(cm.Data) == 0 && len(sec.Data) == 0
	})
}

// Cleanup leaves nothing behind: speakers, their RBAC and config, the
// Lease and the controller's own account; and a second run (nothing left)
// is not an error.
func TestCleanup(t *testing.T) {
	e := newEnv(t)
	e.config(spineCfg)
	r := e.start("a", func(o *Options) { o.SpeakerImage = "example.com/calico-lb:test" })
	ctx := context.Background()
	waitUntil(t, "the speaker DaemonSet exists", func() bool {
		_, err := e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
		return err == nil
	})
	r.stop()
	for range 2 {
		if err := access.Cleanup(ctx, e.client, access.Access{Namespace: e.ns, LeaseName: e.lease}); err != nil {
			t.Fatal(err)
		}
	}
	for what, get := range map[string]func() error{
		"DaemonSet": func() error {
			_, err := e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
			return err
		},
		"ClusterRole": func() error {
			_, err := e.client.RbacV1().ClusterRoles().Get(ctx, access.SpeakerName+"-"+e.ns, metav1.GetOptions{})
			return err
		},
		"ServiceAccount": func() error {
			_, err := e.client.CoreV1().ServiceAccounts(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
			return err
		},
		"Lease": func() error {
			_, err := e.client.CoordinationV1().Leases(e.ns).Get(ctx, e.lease, metav1.GetOptions{})
			return err
		},
		"controller's ServiceAccount": func() error {
			_, err := e.client.CoreV1().ServiceAccounts(e.ns).Get(ctx, access.ControllerAccount, metav1.GetOptions{})
			return err
		},
		"fence Service": func() error {
			_, err := e.client.CoreV1().Services(e.ns).Get(ctx, access.FenceName, metav1.GetOptions{})
			return err
		},
		"controller's ClusterRole": func() error {
			_, err := e.client.RbacV1().ClusterRoles().Get(ctx, access.ControllerAccount+"-"+e.ns, metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); !apierrors.IsNotFound(err) {
			t.Errorf("%s still there after Cleanup (%v)", what, err)
		}
	}
}

func TestNodesEndpoint(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rack := e.ns // a label value of this test's own, as nodes are cluster-wide
	for i, ip := range []string{"10.77.1.10", "10.77.1.11"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-n%d", e.ns, i), Labels: map[string]string{"rack": rack}}}
		if i == 1 {
			n.Labels["rack"] = rack + "-other"
		}
		n, err := e.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: n.Name}}
		if _, err := e.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.client.CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{}) })
	}
	e.config("pools:\n  p: {addresses: [10.90.9.0/28]}\nspeakers:\n  node-selector: rack=" + rack + "\n")
	r := e.start("a")
	var nodes api.Nodes
	waitUntil(t, "GET /v1/nodes lists both", func() bool {
		code, body := httpGet(t, r, "/v1/nodes")
		nodes = api.Nodes{}
		n := 0
		if code == 200 && json.Unmarshal([]byte(body), &nodes) == nil {
			for _, v := range nodes.Nodes {
				if strings.HasPrefix(v.Name, e.ns+"-") {
					n++
				}
			}
		}
		return n == 2
	})
	for _, v := range nodes.Nodes {
		switch v.Name {
		case e.ns + "-n0":
			if !v.Speaker || !slices.Equal(v.Addresses, []string{"10.77.1.10"}) {
				t.Fatalf("%+v", v)
			}
		case e.ns + "-n1":
			if v.Speaker || !slices.Equal(v.Addresses, []string{"10.77.1.11"}) {
				t.Fatalf("%+v", v)
			}
		}
	}
}

// startWithPasswords starts a spine-mode controller whose config names a
// BGP password file with content, and returns the file and the config.
func (e *env) startWithPasswords(content string) (pwFile, cfg string) {
	e.t.Helper()
	pwFile = filepath.Join(e.t.TempDir(), "bgp-passwords.yaml")
	if err := os.WriteFile(pwFile, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cfg = spineCfg + "  password-file: " + pwFile + "\n"
	e.config(cfg)
	e.start("a", func(o *Options) { o.SpeakerImage = "example.com/calico-lb:test" })
	return pwFile, cfg
}

// Who can read Pods and ConfigMaps, not Secrets, cannot test password
// guesses against the speakers' pod template: nothing in it derives from
// the passwords. (It once carried a plain SHA-256 of the config and the
// password file, whose format is known: the right guess matched.)
func TestPodTemplateIsNoPasswordOracle(t *testing.T) {
	e := newEnv(t)
	e.startWithPasswords("spine: s3cret\n")
	ctx := context.Background()
	var ds *appsv1.DaemonSet
	waitUntil(t, "the Secret holds the password file", func() bool {
		sec, err := e.client.CoreV1().Secrets(e.ns).Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
		if err != nil || string(sec.Data["bgp-passwords.yaml"]) != "spine: s3cret\n" {
			return false
		}
		ds, err = e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
		return err == nil
	})
	template, err := json.Marshal(ds.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(ctx, access.SpeakerConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	public := []byte(cm.Data["config.yaml"])
	for _, guess := range []string{"password", "spine", "secret", "s3cret"} {
		file := []byte("spine: " + guess + "\n")
		for _, tries := range [][][]byte{{public, file}, {public, {0}, file, {0}}, {file}} {
			h := sha256.Sum256(bytes.Join(tries, nil))
			if bytes.Contains(template, []byte(hex.EncodeToString(h[:8]))) {
				t.Fatalf("the pod template confirms the password guess %q from public data", guess)
			}
		}
	}
}

// TestConfigChangesKeepSpeakerPods: adding a pool, changing communities,
// a peer's timers, a password or the heartbeat keys changes the speakers'
// ConfigMap or Secret, which they watch, and not their pod template: no
// speaker pod is replaced, so no BGP session is reset and no L2 owner
// moves. (Before, a digest of all of it in the template rolled every
// speaker on any change.)
func TestConfigChangesKeepSpeakerPods(t *testing.T) {
	e := newEnv(t)
	pwFile, cfg := e.startWithPasswords("spine: first\n")
	ctx := context.Background()
	ds := e.waitDaemonSet()
	want, err := json.Marshal(ds.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	cmHas := func(s string) func() bool {
		return func() bool {
			cm, err := e.client.CoreV1().ConfigMaps(e.ns).Get(ctx, access.SpeakerConfigName, metav1.GetOptions{})
			return err == nil && strings.Contains(cm.Data["config.yaml"], s)
		}
	}
	secretHas := func(key, s string) func() bool {
		return func() bool {
			sec, err := e.client.CoreV1().Secrets(e.ns).Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
			return err == nil && strings.Contains(string(sec.Data[key]), s)
		}
	}
	waitUntil(t, "the first Secret", secretHas("bgp-passwords.yaml", "first"))
	steps := []struct {
		what   string
		change func()
		done   func() bool
	}{
		{"a second pool", func() {
			e.config(strings.Replace(cfg, "10.96.200.0/28]}\n", "10.96.200.0/28]}\n  q: {addresses: [10.96.201.0/28]}\n", 1))
		}, cmHas("10.96.201.0/28")},
		{"communities", func() {
			e.config(strings.Replace(cfg, "10.96.200.0/28]}", "10.96.200.0/28], communities: ['65000:1']}", 1))
		}, cmHas("65000:1")},
		{"a peer's timers", func() {
			e.config(strings.Replace(cfg, "as-number: 65100}", "as-number: 65100, hold-time: 9, keepalive: 3}", 1))
		}, cmHas("hold-time: 9")},
		{"a password", func() {
			if err := os.WriteFile(pwFile, []byte("spine: second\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, secretHas("bgp-passwords.yaml", "second")},
		{"the heartbeat keys", func() {
			sec, err := e.client.CoreV1().Secrets(e.ns).Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			sec.Data["l2-keys"] = append(sec.Data["l2-keys"], []byte(strings.Repeat("ab", 32)+"\n")...)
			if _, err := e.client.CoreV1().Secrets(e.ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			e.config(cfg + "log-level: debug\n") // a pass of the controller's
		}, func() bool { return cmHas("debug")() && secretHas("l2-keys", strings.Repeat("ab", 32))() }},
	}
	for _, s := range steps {
		s.change()
		waitUntil(t, s.what+" reaches the speakers' objects", s.done)
		time.Sleep(500 * time.Millisecond) // the DaemonSet is applied after them
		ds, err := e.client.AppsV1().DaemonSets(e.ns).Get(ctx, access.SpeakerName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(ds.Spec.Template); !bytes.Equal(got, want) {
			t.Fatalf("%s changed the speakers' pod template, which replaces every speaker pod:\nbefore %s\nafter  %s", s.what, want, got)
		}
	}
}

// The speakers' passwords follow the password file at once, and a file
// that cannot be read leaves them as they are: an emptied Secret would
// roll every speaker without its passwords and drop the MD5 sessions.
func TestSpeakerPasswordsKept(t *testing.T) {
	e := newEnv(t)
	pwFile, cfg := e.startWithPasswords("spine: first\n")
	e.waitDaemonSet()
	secret := func() string {
		s, err := e.client.CoreV1().Secrets(e.ns).Get(context.Background(), access.SpeakerSecretName, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return string(s.Data["bgp-passwords.yaml"])
	}
	waitUntil(t, "the Secret has the password", func() bool { return secret() == "spine: first\n" })

	// Changed: in the Secret within seconds, not at the keeper's next
	// 30 s round.
	start := time.Now()
	if err := os.WriteFile(pwFile, []byte("spine: second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for secret() != "spine: second\n" {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("after 10 s the Secret still has %q", secret())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("password change in the speakers' Secret after %s", time.Since(start).Round(time.Millisecond))

	// Unreadable (a directory in its place), then a config change that
	// has the speakers reconciled: the Secret keeps the last good file.
	if err := os.Remove(pwFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(pwFile, 0o700); err != nil {
		t.Fatal(err)
	}
	e.config(cfg + "log-level: debug\n")
	time.Sleep(3 * time.Second)
	if got := secret(); got != "spine: second\n" {
		t.Fatalf("with the password file unreadable the Secret went to %q", got)
	}
}
