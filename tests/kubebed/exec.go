package kubebed

import (
	"bytes"
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// Exec runs cmd in a container through the kubelet, as `kubectl exec` and
// Juju's agent do, and returns its standard output; a failure carries the
// standard error.
func (b *Bed) Exec(ctx context.Context, ns, pod, container string, stdin io.Reader, cmd ...string) (string, error) {
	req := b.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdin: stdin != nil, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(b.Cluster.Config(cluster.UserAdmin), "POST", req.URL())
	if err != nil {
		return "", err
	}
	var out, errOut bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errOut})
	if err != nil {
		return out.String(), fmt.Errorf("exec %v in %s/%s[%s]: %w\n%s%s", cmd, ns, pod, container, err, out.String(), errOut.String())
	}
	return out.String() + errOut.String(), nil
}

// Logs is a container's log as `kubectl logs` shows it.
func (b *Bed) Logs(ctx context.Context, ns, pod, container string) (string, error) {
	data, err := b.Kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Do(ctx).Raw()
	return string(data), err
}
