package cluster

import "fmt"

// The configs of a test node's daemons. Each setting that differs from the
// defaults is there because this machine needs it (a privileged container
// with cgroup v1, no CAP_SYS_RESOURCE, a conntrack table shared with the
// host) or to keep every path inside the node's directory.

// containerdConfig is containerd 2's (config version 3).
func containerdConfig(dir, registry string) string {
	return fmt.Sprintf(`version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]
[grpc]
  address = "%[1]s/containerd.sock"
[ttrpc]
  address = "%[1]s/containerd.sock.ttrpc"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '%[2]s/pause:test'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '%[1]s/certs.d'
  [plugins.'io.containerd.cri.v1.runtime']
    # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj.
    restrict_oom_score_adj = true
    enable_cdi = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '%[1]s/cni'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
  [plugins.'io.containerd.internal.v1.opt']
    # The default is /opt/containerd, outside the node.
    path = '/var/lib/containerd/opt'
`, dir, registry)
}

// cniConfig is a bridge on the node with its pod range (and an IPv6 one
// for dual-stack nodes); the bed routes each range to its node.
func cniConfig(podCIDR, podCIDR6 string) string {
	ranges, routes := fmt.Sprintf(`[{"subnet": %q}]`, podCIDR), `{"dst": "0.0.0.0/0"}`
	if podCIDR6 != "" {
		ranges += fmt.Sprintf(`, [{"subnet": %q}]`, podCIDR6)
		routes += `, {"dst": "::/0"}`
	}
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "bed",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [%s], "routes": [%s]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, ranges, routes)
}

func kubeletConfig(dir, cgroup string, o NodeOptions) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%[1]s/containerd.sock
imageServiceEndpoint: unix://%[1]s/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /%[2]s/pods
cgroupsPerQOS: true
failSwapOn: false
failCgroupV1: false
address: %[3]s
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
# Anonymous and AlwaysAllow: kube-apiserver reaches logs and exec without
# client certificates; nothing outside the bed reaches the kubelet.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
resolvConf: %[1]s/resolv.conf
clusterDomain: cluster.local
volumePluginDir: /var/lib/kubelet/volume-plugins
evictionHard: {memory.available: 100Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 50
# No CAP_SYS_RESOURCE here: the kubelet cannot lower its oom_score_adj.
oomScoreAdj: 0
rotateCertificates: false
serverTLSBootstrap: false
nodeStatusUpdateFrequency: 2s
`, dir, cgroup, o.IP)
}

func kubeProxyConfig(kubeconfig string, o NodeOptions) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: %s
clusterCIDR: %s
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
# nf_conntrack_max is read-only outside the root namespace.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, o.Name, o.ProxyMode, o.ClusterCIDR)
}
