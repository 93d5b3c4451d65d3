package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// calicoIPPoolPaths are where Calico's IPPools are, when calico-node keeps
// them in the Kubernetes datastore: its CRDs, or its API server's v3.
// Charmed Kubernetes' calico keeps them in etcd, where calico-lb cannot
// see them (and Calico's LoadBalancer IPAM does not run).
var calicoIPPoolPaths = []string{"/apis/crd.projectcalico.org/v1/ippools", "/apis/projectcalico.org/v3/ippools"}

// calicoLoadBalancerPools names Calico's IPPools that allow LoadBalancer
// use (Calico 3.30 and later hand their addresses to LoadBalancer Services
// without a class, competing with calico-lb), with each pool's CIDR. None
// where the kinds do not exist.
func (c *Controller) calicoLoadBalancerPools(ctx context.Context) ([]string, error) {
	var out []string
	for _, path := range calicoIPPoolPaths {
		raw, err := c.opts.Client.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("list Calico's IPPools (%s): %w", path, err)
		}
		var list struct {
			Items []struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
				Spec struct {
					CIDR        string   `json:"cidr"`
					AllowedUses []string `json:"allowedUses"`
				} `json:"spec"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("decode the IPPools of %s: %w", path, err)
		}
		for _, p := range list.Items {
			if slices.Contains(p.Spec.AllowedUses, "LoadBalancer") {
				if s := fmt.Sprintf("%s (%s)", p.Metadata.Name, p.Spec.CIDR); !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out, nil
}
