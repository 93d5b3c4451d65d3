package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func waiting(c *Controller) int {
	n := 0
	c.firstSee.Range(func(any, any) bool { n++; return true })
	return n
}

// The allocation-latency clock runs only for Services calico-lb serves,
// starts when a Service becomes one, and stops for good when it goes: the
// map holds the Services waiting now, not every Service ever seen.
func TestFirstSeeHoldsOnlyWaitingServices(t *testing.T) {
	c := &Controller{}
	svc := func(uid string, typ corev1.ServiceType) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: uid, Namespace: "ns", UID: types.UID(uid)}, Spec: corev1.ServiceSpec{Type: typ}}
	}
	// Ten thousand ClusterIP Services, created and deleted: nothing kept.
	for i := range 10000 {
		s := svc("cip"+string(rune('a'+i%26))+time.Duration(i).String(), corev1.ServiceTypeClusterIP)
		c.observe(s, false)
		c.observe(s, true)
	}
	if n := waiting(c); n != 0 {
		t.Fatalf("%d Services timed after 10,000 ClusterIP Services came and went", n)
	}
	// A ClusterIP Service for a while, then LoadBalancer: timed from then.
	s := svc("web", corev1.ServiceTypeClusterIP)
	c.observe(s, false)
	time.Sleep(50 * time.Millisecond)
	became := time.Now()
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	c.observe(s, false)
	v, ok := c.firstSee.Load(s.UID)
	if !ok {
		t.Fatal("a LoadBalancer Service waiting for its IP is not timed")
	}
	if at := v.(time.Time); at.Before(became.Add(-5 * time.Millisecond)) {
		t.Fatalf("timed from %s, before it became a LoadBalancer at %s", at.Format(time.StampMilli), became.Format(time.StampMilli))
	}
	// Back to ClusterIP before it got an IP: forgotten.
	s.Spec.Type = corev1.ServiceTypeClusterIP
	c.observe(s, false)
	if n := waiting(c); n != 0 {
		t.Fatalf("%d Services timed after the only waiting one stopped being a LoadBalancer", n)
	}
	// Another class's LoadBalancer is not ours to time; a deleted one goes.
	other := "example.com/other"
	o := svc("other", corev1.ServiceTypeLoadBalancer)
	o.Spec.LoadBalancerClass = &other
	c.observe(o, false)
	lb := svc("lb", corev1.ServiceTypeLoadBalancer)
	c.observe(lb, false)
	c.observe(lb, true)
	if n := waiting(c); n != 0 {
		t.Fatalf("%d Services timed: another class's and a deleted one should not be", n)
	}
}
