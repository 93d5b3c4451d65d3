// Package kubeapply creates or updates the objects calico-lb keeps in the
// cluster (the speakers' DaemonSet and what it needs, the controller's own
// ServiceAccount and RBAC), writing only when what is wanted changed.
package kubeapply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// HashKey is the annotation that holds a hash of what calico-lb last
// wrote into an object.
const HashKey = "calico-lb.io/spec-hash"

// FieldManager is who calico-lb's writes are attributed to.
const FieldManager = "calico-lb"

// Client is the part of a typed client Apply needs.
type Client[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// Apply creates want, or updates the existing object when the hash of
// want differs from the one recorded at the last write; merge copies the
// wanted fields into the existing object. merge nil means the object never
// needs updating once it exists. Comparing hashes of what we wanted, not
// the objects, leaves alone the fields the apiserver and others fill in.
func Apply[T metav1.Object](ctx context.Context, c Client[T], want T, merge func(have, want T)) error {
	have, err := c.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.Create(ctx, want, metav1.CreateOptions{FieldManager: FieldManager})
		return err
	}
	if err != nil || merge == nil {
		return err
	}
	return update(ctx, c, have, want, merge)
}

// Update fills an object someone else creates (the charm, with more
// rights than the caller): when it is missing, the error says who makes
// it. It writes when merging want into the object changes it, whatever
// the object's annotations say, so an edit by hand is put back (Apply's
// hash would take an edit that kept the annotation for ours). For objects
// the apiserver does not fill in (ConfigMaps, Secrets), where a merged
// copy equals the stored object exactly when nothing changed.
func Update[T interface {
	metav1.Object
	runtime.Object
}](ctx context.Context, c Client[T], want T, merge func(have, want T), maker string) error {
	have, err := c.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s makes it: %w", maker, err)
	}
	if err != nil {
		return err
	}
	merged := have.DeepCopyObject().(T)
	merge(merged, want)
	if equality.Semantic.DeepEqual(merged, have) {
		return nil
	}
	_, err = c.Update(ctx, merged, metav1.UpdateOptions{FieldManager: FieldManager})
	return err
}

func update[T metav1.Object](ctx context.Context, c Client[T], have, want T, merge func(have, want T)) error {
	wantHash := Hash(want)
	if have.GetAnnotations()[HashKey] == wantHash {
		return nil
	}
	merge(have, want)
	ann := have.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[HashKey] = wantHash
	have.SetAnnotations(ann)
	_, err := c.Update(ctx, have, metav1.UpdateOptions{FieldManager: FieldManager})
	return err
}

// Hash hashes an object's wanted content. JSON, not a printed form:
// printing would include pointer addresses and change on every call.
func Hash(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Delete runs deletions in order, ignoring objects already gone.
func Delete(dels ...func() error) error {
	for _, f := range dels {
		if err := f(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
