package speaker

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// KubeFiles serves a speaker's files from one ConfigMap and one Secret:
// a path's file name is a key of either (config.yaml in the ConfigMap;
// bgp-passwords.yaml and l2-keys in the Secret). Each is
// watched by name, which is all the speakers' Role allows.
type KubeFiles struct {
	ns, config, secret string
	cms                cache.SharedIndexInformer
	secrets            cache.SharedIndexInformer
	changed            chan struct{}
}

// NewKubeFiles returns the files of ConfigMap config and Secret secret in
// namespace ns; Start watches them.
func NewKubeFiles(client kubernetes.Interface, ns, config, secret string) *KubeFiles {
	k := &KubeFiles{ns: ns, config: config, secret: secret, changed: make(chan struct{}, 1)}
	named := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	k.cms = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns), named(config)).Core().V1().ConfigMaps().Informer()
	k.secrets = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns), named(secret)).Core().V1().Secrets().Informer()
	h := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { k.kick() }, UpdateFunc: func(_, _ any) { k.kick() }, DeleteFunc: func(any) { k.kick() }}
	_, _ = k.cms.AddEventHandler(h)
	_, _ = k.secrets.AddEventHandler(h)
	return k
}

func (k *KubeFiles) kick() {
	select {
	case k.changed <- struct{}{}:
	default:
	}
}

func (k *KubeFiles) Start(ctx context.Context) {
	go k.cms.Run(ctx.Done())
	go k.secrets.Run(ctx.Done())
	// Reads fail until both are listed, and the events of the first list
	// may come before that: say once more when reads can succeed.
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), k.cms.HasSynced, k.secrets.HasSynced) {
			k.kick()
		}
	}()
}

func (k *KubeFiles) Changed() <-chan struct{} { return k.changed }

// ReadFile returns the value of path's file name in the ConfigMap, else
// in the Secret. Until both have been listed every read fails, so that a
// speaker does not take a Secret not yet seen for an empty one.
func (k *KubeFiles) ReadFile(path string) ([]byte, error) {
	if !k.cms.HasSynced() || !k.secrets.HasSynced() {
		return nil, fmt.Errorf("%s: ConfigMap %s/%s and Secret %s/%s not read yet", path, k.ns, k.config, k.ns, k.secret)
	}
	key := filepath.Base(path)
	if obj, ok, _ := k.cms.GetStore().GetByKey(k.ns + "/" + k.config); ok {
		if v, ok := obj.(*corev1.ConfigMap).Data[key]; ok {
			return []byte(v), nil
		}
	}
	if obj, ok, _ := k.secrets.GetStore().GetByKey(k.ns + "/" + k.secret); ok {
		if v, ok := obj.(*corev1.Secret).Data[key]; ok {
			return v, nil
		}
	}
	return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("no key %q in ConfigMap %s/%s or Secret %s/%s: %w", key, k.ns, k.config, k.ns, k.secret, fs.ErrNotExist)}
}
