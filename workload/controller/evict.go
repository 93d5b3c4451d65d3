package controller

import (
	corev1 "k8s.io/api/core/v1"
)

// moveEvicted queues the later joiners that svc, the first holder of a
// shared address, took a port back from: each gets a new address on its
// own pass, and an Event that says why. (The two share a namespace, or a
// pool that shares across namespaces, so naming svc tells nothing new.)
func (t *term) moveEvicted(svc *corev1.Service) {
	for _, sk := range t.alloc.TakeEvicted() {
		t.queue.Add(sk.Namespace + "/" + sk.Name)
		if ev, err := t.c.services.Services(sk.Namespace).Get(sk.Name); err == nil {
			t.c.events.post(ev, corev1.EventTypeWarning, "IPReleased", "",
				"Released the address shared with %s/%s, which held it first and now uses a port this Service had there; a new address follows", svc.Namespace, svc.Name)
		}
	}
}
