package leadership

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Address is where other instances reach a listener bound to listen
// (host:port): listen itself when it is bound to one address, else the
// port at the address host gives (the Pod's IP). "" when host gives none.
func Address(listen string, host func() (string, error)) (string, error) {
	h, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listener address %q: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(h); err == nil && !ip.IsUnspecified() {
		return listen, nil
	}
	ip, err := host()
	if err != nil || ip == "" {
		return "", err
	}
	return net.JoinHostPort(ip, port), nil
}

// PodIP is the IP of Pod namespace/name; "" when name is "" (not run in
// a Pod).
func PodIP(ctx context.Context, client kubernetes.Interface, namespace, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the controller's own Pod %s/%s for its IP: %w", namespace, name, err)
	}
	if pod.Status.PodIP == "" {
		return "", fmt.Errorf("the controller's own Pod %s/%s has no IP yet", namespace, name)
	}
	return pod.Status.PodIP, nil
}
