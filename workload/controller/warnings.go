package controller

import corev1 "k8s.io/api/core/v1"

// warn records a Warning Event once per distinct message.
func (t *term) warn(svc *corev1.Service, key, reason, msg string) {
	if t.warned[key] == msg {
		return
	}
	t.warned[key] = msg
	t.c.events.post(svc, corev1.EventTypeWarning, reason, "", "%s", msg)
	t.c.log.Warn(reason, "service", key, "error", msg)
}

// warnOnce records a Warning Event about id once for the Service's life.
func (t *term) warnOnce(svc *corev1.Service, key, id, reason, msg string) {
	if t.warnedOnce[key][id] {
		return
	}
	if t.warnedOnce[key] == nil {
		t.warnedOnce[key] = map[string]bool{}
	}
	t.warnedOnce[key][id] = true
	t.c.events.post(svc, corev1.EventTypeWarning, reason, "", "%s", msg)
}

// forgetWarnings drops what was said about a Service that is gone or no
// longer calico-lb's: a term lives for weeks, through millions of them.
func (t *term) forgetWarnings(key string) {
	delete(t.warned, key)
	delete(t.warnedOnce, key)
}
