package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// eventComponent is the source the controller's Events name.
const eventComponent = "calico-lb-controller"

// EventQPS and EventBurst are the rate of the client that sends Events: a
// client of its own, so that a burst of Events never delays status writes.
const (
	EventQPS   = 20
	EventBurst = 50
)

// maxQueuedEvents bounds the outbox; past it new Events are dropped and
// counted, as client-go's recorder drops them when its channel is full.
const maxQueuedEvents = 10000

// outbox sends the controller's Events, one at a time and in order. It
// replaces client-go's recorder, whose queue cannot be edited: an Event
// that a later one makes stale (a pool change held back, then reverted)
// kept going out long after, at the Event client's rate. Here an Event
// posted under a key replaces the one queued under that key, so each
// Service hears the latest word on a change once, and what is sent is
// never older than what is known.
type outbox struct {
	client   kubernetes.Interface
	instance string
	log      *slog.Logger
	metrics  *metrics

	mu    sync.Mutex
	queue []*outEvent
	byKey map[string]*outEvent // queued, not yet sent
	wake  chan struct{}
}

type outEvent struct {
	ref                  corev1.ObjectReference
	typ, reason, message string
	key                  string // "" when nothing replaces it
	at                   time.Time
	stale                bool
}

func newOutbox(client kubernetes.Interface, instance string, log *slog.Logger, m *metrics) *outbox {
	return &outbox{client: client, instance: instance, log: log, metrics: m, byKey: map[string]*outEvent{}, wake: make(chan struct{}, 1)}
}

// refTo refers to a Service, also one that is gone (then by name only).
func refTo(svc *corev1.Service) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name,
		UID: svc.UID, ResourceVersion: svc.ResourceVersion}
}

// post queues an Event about svc. With a key, it replaces the Event queued
// under that key, if one has not gone out yet.
func (o *outbox) post(svc *corev1.Service, typ, reason, key, format string, args ...any) {
	ev := &outEvent{ref: refTo(svc), typ: typ, reason: reason, message: fmt.Sprintf(format, args...), key: key, at: time.Now()}
	o.mu.Lock()
	if len(o.queue) >= maxQueuedEvents {
		// Full: this one is dropped, and one queued under its key still
		// goes (marking it stale first would have lost both).
		o.mu.Unlock()
		o.metrics.events.WithLabelValues("dropped").Inc()
		return
	}
	if key != "" {
		if old := o.byKey[key]; old != nil {
			old.stale = true
			o.metrics.events.WithLabelValues("replaced").Inc()
		}
		o.byKey[key] = ev
	}
	o.queue = append(o.queue, ev)
	o.metrics.eventsQueued.Set(float64(len(o.queue)))
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest Event that is not stale, or nil.
func (o *outbox) next() *outEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.queue) > 0 {
		ev := o.queue[0]
		o.queue[0] = nil
		o.queue = o.queue[1:]
		if ev.key != "" && o.byKey[ev.key] == ev {
			delete(o.byKey, ev.key)
		}
		o.metrics.eventsQueued.Set(float64(len(o.queue)))
		if !ev.stale {
			return ev
		}
	}
	return nil
}

// run sends queued Events until ctx ends. The lock is never held while
// sending, so posting never waits on the apiserver.
func (o *outbox) run(ctx context.Context) {
	for {
		ev := o.next()
		if ev == nil {
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
				continue
			}
		}
		o.send(ctx, ev)
	}
}

// send creates the Event, retrying a few times on errors the apiserver
// may get over (as client-go's recorder does).
func (o *outbox) send(ctx context.Context, ev *outEvent) {
	for attempt := range 4 {
		now := metav1.NewTime(ev.at)
		e := &corev1.Event{
			ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ev.ref.Name, time.Now().UnixNano()), Namespace: ev.ref.Namespace},
			InvolvedObject:      ev.ref,
			Reason:              ev.reason,
			Message:             ev.message,
			Type:                ev.typ,
			Source:              corev1.EventSource{Component: eventComponent},
			FirstTimestamp:      now,
			LastTimestamp:       now,
			Count:               1,
			ReportingController: eventComponent,
			ReportingInstance:   o.instance,
		}
		_, err := o.client.CoreV1().Events(ev.ref.Namespace).Create(ctx, e, metav1.CreateOptions{})
		switch {
		case err == nil:
			o.metrics.events.WithLabelValues("sent").Inc()
			return
		case ctx.Err() != nil:
			return
		case apierrors.IsAlreadyExists(err):
			continue // the name clashed: a new one
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
			// Will not get better (a namespace that is gone, say).
			o.log.Warn("event not recorded", "service", ev.ref.Namespace+"/"+ev.ref.Name, "reason", ev.reason, "error", err)
			o.metrics.events.WithLabelValues("dropped").Inc()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	o.metrics.events.WithLabelValues("dropped").Inc()
}
