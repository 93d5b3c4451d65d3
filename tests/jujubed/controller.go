package jujubed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/kubebed"
)

// Controller is a real Juju controller bootstrapped onto a kubebed
// cluster, and the real juju client pointed at it.
type Controller struct {
	Bin     *Binaries
	Data    string // JUJU_DATA: the client's store
	Name    string // the controller's name
	Cloud   string // the Kubernetes cloud added with add-k8s
	kubecfg string
	log     func(string)
	// BootstrapTook is the bootstrap's duration, for the figures.
	BootstrapTook time.Duration
}

// StorageClass is the class the controller's storage comes from: the bed
// has no provisioner, so Bootstrap makes one volume for it by hand.
const StorageClass = "juju-local"

// Options shape Bootstrap.
type Options struct {
	// Dir holds the client's store, the controller's volume and the
	// controller charm; the caller removes it.
	Dir string
	// Address is where the client reaches the controller's API: a node's
	// address that the root namespace reaches (its management address),
	// given to the controller's Service as an external IP, which
	// kube-proxy forwards to the controller pod.
	Address string
	Log     func(string)
}

// Bootstrap builds Juju (when missing), pushes its images to the bed's
// registry, and bootstraps a controller named "bed" onto the cluster the
// way an operator bootstraps onto Kubernetes: add-k8s from the kubeconfig,
// then juju bootstrap with the stand-in controller charm.
//
// What differs from a cloud's cluster, and why:
//   - The controller's Service is a LoadBalancer with the node's address
//     as its external IP (controller-service-type, controller-external-ips),
//     made a ClusterIP with that external IP once bootstrapped.
//     The default, a ClusterIP reached through a port-forward over the
//     apiserver, fails here: the client dials the moment the pod runs,
//     before the agent listens, and client-go drops the whole port-forward
//     on the refused connection ("lost connection to pod"), which the
//     client takes as fatal.
//   - caas-image-repo is the JSON form at bootstrap (the client checks a
//     registry over HTTPS unless serveraddress says http://) and the plain
//     host:port after it, because Juju 4.1-beta2 builds the unit pods'
//     image paths by appending /jujud-operator to the raw setting, which
//     the JSON form turns into an invalid reference.
//   - The controller's volume is a hostPath directory of mode 0777, as
//     hostpath provisioners make them: the kubelet creates the subPath
//     directories Juju mounts into with the volume's mode, and the agent
//     (uid 170) must write there.
func Bootstrap(ctx context.Context, bed *kubebed.Bed, kubeconfig string, opts Options) (*Controller, error) {
	log := opts.Log
	if log == nil {
		log = func(string) {}
	}
	bin, err := Build(ctx, log)
	if err != nil {
		return nil, err
	}
	imgs, err := Images(bin)
	if err != nil {
		return nil, err
	}
	for name, img := range imgs {
		if err := bed.Registry.Push(ctx, name, img); err != nil {
			return nil, err
		}
	}
	c := &Controller{Bin: bin, Data: filepath.Join(opts.Dir, "juju-data"), Name: "bed", Cloud: "bed", kubecfg: kubeconfig, log: log}
	// An existing store keeps the client from fetching public clouds.
	if err := os.MkdirAll(c.Data, 0o700); err != nil {
		return nil, err
	}
	if err := controllerVolume(ctx, bed, filepath.Join(opts.Dir, "controller-volume")); err != nil {
		return nil, err
	}
	charmPath, err := StandInCharm(ctx, opts.Dir, "controller")
	if err != nil {
		return nil, err
	}
	if _, err := c.Juju(ctx, "add-k8s", c.Cloud, "--client", "--storage", StorageClass); err != nil {
		return nil, err
	}
	repo, _ := json.Marshal(map[string]string{"repository": bed.Registry.Host, "serveraddress": "http://" + bed.Registry.Host})
	start := time.Now()
	log("bootstrapping a Juju " + JujuAgentVersion + " controller (about a minute)")
	if _, err := c.Juju(ctx, "bootstrap", c.Cloud, c.Name, "--controller-charm-path", charmPath,
		"--config", "caas-image-repo="+string(repo),
		"--config", "controller-service-type=loadbalancer",
		"--config", "controller-external-ips=["+opts.Address+"]",
		"--bootstrap-constraints", "mem=1024M"); err != nil {
		return nil, err
	}
	c.BootstrapTook = time.Since(start)
	if _, err := c.Juju(ctx, "controller-config", "caas-image-repo="+bed.Registry.Host); err != nil {
		return nil, err
	}
	if err := clusterIPService(ctx, bed, "controller-"+c.Name, "controller-service"); err != nil {
		return nil, err
	}
	log(fmt.Sprintf("Juju controller up in %s", c.BootstrapTook.Round(time.Second)))
	return c, nil
}

// clusterIPService turns the controller's LoadBalancer Service into a
// ClusterIP one that keeps its external IP (kube-proxy still forwards it):
// the bed gave that address by hand, and no load balancer (calico-lb
// included, which would report an address outside its pools) is to be
// asked for it.
func clusterIPService(ctx context.Context, bed *kubebed.Bed, ns, name string) error {
	svcs := bed.Kube.CoreV1().Services(ns)
	svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the controller's Service: %w", err)
	}
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.LoadBalancerIP = ""
	svc.Spec.ExternalTrafficPolicy = ""
	svc.Spec.AllocateLoadBalancerNodePorts = nil
	for i := range svc.Spec.Ports {
		svc.Spec.Ports[i].NodePort = 0
	}
	if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("the controller's Service to ClusterIP: %w", err)
	}
	return nil
}

// controllerVolume makes the storage class and the one volume the
// controller's claim binds.
func controllerVolume(ctx context.Context, bed *kubebed.Bed, dir string) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	if _, err := bed.Kube.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: StorageClass},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: &wait,
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("storage class: %w", err)
	}
	dirType := corev1.HostPathDirectory
	_, err := bed.Kube.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "juju-controller"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:              StorageClass,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("controller volume: %w", err)
	}
	return nil
}

// Juju runs the juju client with args and returns its standard output;
// an error carries both outputs.
func (c *Controller) Juju(ctx context.Context, args ...string) (string, error) {
	return c.JujuIn(ctx, "", args...)
}

// JujuIn is Juju run in dir (where a relative charm path is resolved).
func (c *Controller) JujuIn(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Bin.Juju, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "JUJU_DATA="+c.Data, "KUBECONFIG="+c.kubecfg, "NO_COLOR=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("juju %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// Env is the environment that points a juju client at this controller.
func (c *Controller) Env() []string {
	return []string{"JUJU_DATA=" + c.Data, "KUBECONFIG=" + c.kubecfg, "PATH=" + filepath.Dir(c.Bin.Juju) + ":" + os.Getenv("PATH")}
}
