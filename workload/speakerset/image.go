package speakerset

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultContainer is the workload container's name in the controller's
// Pod: Juju names a sidecar charm's containers after metadata.yaml.
const DefaultContainer = "calico-lb"

// Image is what the speaker pods run and how the kubelet gets it.
type Image struct {
	Image       string
	PullPolicy  corev1.PullPolicy
	PullSecrets []corev1.LocalObjectReference
}

// imageFinder finds the speakers' image once and then remembers it: the
// controller's own image cannot change without its Pod being replaced.
//
// Juju sets no environment variable for an oci-image resource; it puts the
// image into the Pod's spec, with a pull secret when the registry needs
// credentials. Reading the Pod is therefore the one source that is right
// under Juju, needs nothing from the charm but the Pod's name, and hands
// the speakers exactly the reference and credentials the kubelet already
// used for the controller.
type imageFinder struct {
	client    kubernetes.Interface
	override  string // --speaker-image: used as it is
	namespace string
	pod       string // the controller's own Pod (POD_NAME)
	container string

	mu    sync.Mutex
	found *Image
}

// errNoImageSource says how to give the controller an image source.
var errNoImageSource = errors.New("no speaker image: the controller knows neither its own Pod (POD_NAME, set by the charm) nor --speaker-image; speakers not deployed")

func (f *imageFinder) find(ctx context.Context) (Image, error) {
	if f.override != "" {
		return Image{Image: f.override, PullPolicy: corev1.PullIfNotPresent}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.found != nil {
		return *f.found, nil
	}
	if f.pod == "" {
		return Image{}, errNoImageSource
	}
	img, err := podImage(ctx, f.client, f.namespace, f.pod, f.container)
	if err != nil {
		return Image{}, fmt.Errorf("no speaker image: %w; speakers not deployed", err)
	}
	f.found = &img
	return img, nil
}

// podImage reads the image of container in Pod namespace/name.
func podImage(ctx context.Context, client kubernetes.Interface, namespace, name, container string) (Image, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return Image{}, fmt.Errorf("cannot read the controller's own Pod %s/%s (deploy with --trust, or run `juju trust calico-lb --scope=cluster`): %w", namespace, name, err)
	case err != nil:
		return Image{}, fmt.Errorf("read the controller's own Pod %s/%s: %w", namespace, name, err)
	}
	return imageOf(pod, container)
}

// imageOf is the image of container in pod, with its pull policy and the
// pod's pull secrets.
func imageOf(pod *corev1.Pod, container string) (Image, error) {
	namespace, name := pod.Namespace, pod.Name
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			if c.Image == "" {
				return Image{}, fmt.Errorf("container %q of Pod %s/%s has no image", container, namespace, name)
			}
			policy := c.ImagePullPolicy
			if policy == "" {
				policy = corev1.PullIfNotPresent
			}
			return Image{Image: c.Image, PullPolicy: policy, PullSecrets: pod.Spec.ImagePullSecrets}, nil
		}
		names = append(names, c.Name)
	}
	return Image{}, fmt.Errorf("pod %s/%s has no container %q (it has %s); set --container or --speaker-image", namespace, name, container, strings.Join(names, ", "))
}
