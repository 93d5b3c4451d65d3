package speaker

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// nodeEvents returns what tells the cluster, as Events on this speaker's
// Node, that an L2 interface cannot be answered on (why) or can again (why
// ""): an operator who set l2-interfaces to a name some nodes lack sees it
// in `kubectl describe node`. Nil without a client.
func (s *Speaker) nodeEvents(ctx context.Context, getNode func(string) (*corev1.Node, error)) func(iface, why string) {
	if s.opts.Client == nil {
		return nil
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.opts.Client.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "calico-lb-speaker", Host: s.opts.NodeName})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	return func(iface, why string) {
		n, err := getNode(s.opts.NodeName)
		if err != nil {
			s.log.Warn("no Event for an L2 interface: own node not found", "node", s.opts.NodeName, "error", err)
			return
		}
		if why == "" {
			rec.Eventf(n, corev1.EventTypeNormal, "L2InterfaceBack", "calico-lb answers ARP/NDP on %s again", iface)
			return
		}
		rec.Eventf(n, corev1.EventTypeWarning, "L2InterfaceMissing", "calico-lb cannot answer ARP/NDP on %s: %s; it answers on the node's other interfaces and tries again every %s", iface, why, L2Rescan)
	}
}
