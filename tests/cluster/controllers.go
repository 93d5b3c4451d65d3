package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// startControllers starts kube-controller-manager (Deployments, ReplicaSets,
// DaemonSets, the EndpointSlice controller, ServiceAccounts and their
// tokens, node lifecycle) and kube-scheduler, each as Kubernetes' default
// RBAC knows it, on loopback ports of their own.
func (c *Cluster) startControllers(ctx context.Context, opts Options) error {
	if err := NodeBinaries(ctx, c.logf); err != nil {
		return err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return err
	}
	kcm, err := c.WriteKubeconfig(UserKCM)
	if err != nil {
		return err
	}
	sched, err := c.WriteKubeconfig(UserScheduler)
	if err != nil {
		return err
	}
	grace := opts.NodeMonitorGracePeriod
	if grace == 0 {
		grace = 50 * time.Second
	}
	if err := c.spawn(c.out, filepath.Join(BinDir(), "kube-controller-manager"),
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+filepath.Join(c.Dir, "sa.key"),
		"--root-ca-file="+filepath.Join(c.Dir, "ca.crt"),
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[0]),
		// Kept inside the work directory: the default is /usr/libexec.
		"--flex-volume-plugin-dir="+filepath.Join(c.Dir, "flex"),
		"--allocate-node-cidrs=false",
		"--node-monitor-grace-period="+grace.String(),
		"--v=0",
	); err != nil {
		return err
	}
	if err := c.spawn(c.out, filepath.Join(BinDir(), "kube-scheduler"),
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[1]),
		"--v=0",
	); err != nil {
		return err
	}
	c.logf(fmt.Sprintf("kube-controller-manager and kube-scheduler started (node monitor grace %s)", grace))
	return nil
}
