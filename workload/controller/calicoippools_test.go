package controller

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/calico-lb/calico-lb/workload/api"
)

const ippoolCRD = `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"ippools.crd.projectcalico.org"},
"spec":{"group":"crd.projectcalico.org","scope":"Cluster",
 "names":{"kind":"IPPool","listKind":"IPPoolList","plural":"ippools","singular":"ippool"},
 "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}`

// Calico's IPPools with LoadBalancer in allowedUses, as calico-node's
// Kubernetes datastore keeps them (its CRD, on the real apiserver), reach
// verify's facts through the controller's own narrow account; pools for
// workloads only do not.
func TestFactsSeeCalicoLoadBalancerPools(t *testing.T) {
	e := newEnv(t)
	e.config("mode: calico\npools:\n  p: {addresses: [10.96.210.0/28]}\n")
	r := e.start("a")
	facts := func() api.ServicesFacts {
		t.Helper()
		var f api.ServicesFacts
		waitUntil(t, "GET /v1/services answers", func() bool {
			code, body := httpGet(t, r, "/v1/services")
			return code == 200 && json.Unmarshal([]byte(body), &f) == nil
		})
		return f
	}
	if f := facts(); len(f.CalicoLoadBalancerPools) != 0 || f.CalicoPoolsErr != "" {
		t.Fatalf("without Calico's CRD: %v %q", f.CalicoLoadBalancerPools, f.CalicoPoolsErr)
	}
	ctx := context.Background()
	rc := e.client.Discovery().RESTClient()
	if _, err := rc.Post().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").Body([]byte(ippoolCRD)).DoRaw(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = rc.Delete().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ippools.crd.projectcalico.org").DoRaw(context.Background())
	})
	waitUntil(t, "Calico's IPPool kind is served", func() bool {
		_, err := rc.Get().AbsPath("/apis/crd.projectcalico.org/v1/ippools").DoRaw(ctx)
		return err == nil
	})
	for name, uses := range map[string]string{"default-ipv4-ippool": `["Workload","Tunnel"]`, "lb": `["LoadBalancer"]`} {
		cidr := map[string]string{"lb": "10.9.0.0/24", "default-ipv4-ippool": "192.168.0.0/16"}[name]
		obj := `{"apiVersion":"crd.projectcalico.org/v1","kind":"IPPool","metadata":{"name":"` + name + `"},"spec":{"cidr":"` + cidr + `","allowedUses":` + uses + `}}`
		if _, err := rc.Post().AbsPath("/apis/crd.projectcalico.org/v1/ippools").Body([]byte(obj)).DoRaw(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if f := facts(); !slices.Equal(f.CalicoLoadBalancerPools, []string{"lb (10.9.0.0/24)"}) || f.CalicoPoolsErr != "" {
		t.Fatalf("Calico's LoadBalancer pools: %v %q", f.CalicoLoadBalancerPools, f.CalicoPoolsErr)
	}
}
