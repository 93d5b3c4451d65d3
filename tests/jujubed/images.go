package jujubed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/calico-lb/calico-lb/workload/image"
)

// The images a Kubernetes controller pulls, under the registry given as
// the controller's caas-image-repo: the controller's own (init container
// and api-server), and the base of every charm container (the charm's
// base ubuntu@24.04).
const (
	OperatorImage  = "jujud-operator:" + JujuAgentVersion
	CharmBaseImage = "charm-base:ubuntu-24.04"
)

// Juju's users in its images (internal/provider/kubernetes/constants).
const (
	jujuUID  = 170
	sjujuUID = 171
)

var created = time.Unix(0, 0).UTC()

// Images builds the two images from b and Debian's busybox-static (the
// shell and the few tools the pods' start-up scripts run: mkdir, cp, cat,
// tar, chmod, mv). Juju's published images are Ubuntu rocks; nothing in
// them is needed for a Go charm.
func Images(b *Binaries) (map[string]v1.Image, error) {
	base, err := baseFiles()
	if err != nil {
		return nil, err
	}
	files := append([]image.File{}, base...)
	for name, path := range map[string]string{"jujuagentd": b.Agentd, "containeragent": b.ContainerAgent, "jujuc": b.Jujuc, "pebble": b.Pebble} {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		files = append(files, image.File{Path: "opt/" + name, Mode: 0o755, Data: data})
	}
	files = append(files, image.File{Path: "opt/jujud", Link: "jujuagentd"})
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	op, err := image.FromFiles(runtime.GOARCH, image.WithParents(files), v1.Config{Env: env, WorkingDir: "/"}, created)
	if err != nil {
		return nil, err
	}
	cb, err := image.FromFiles(runtime.GOARCH, image.WithParents(base), v1.Config{Env: env, WorkingDir: "/"}, created)
	if err != nil {
		return nil, err
	}
	return map[string]v1.Image{OperatorImage: op, CharmBaseImage: cb}, nil
}

// baseFiles is what both images hold: busybox and its applets in /bin,
// Juju's users, /tmp and /var/lib/juju.
func baseFiles() ([]image.File, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox: %w (make deps installs busybox-static)", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\njuju:x:%d:%d::/var/lib/juju:/bin/sh\nsjuju:x:%d:%d::/var/lib/juju:/bin/sh\n", jujuUID, jujuUID, sjujuUID, sjujuUID)
	group := fmt.Sprintf("root:x:0:\njuju:x:%d:\nsjuju:x:%d:\n", jujuUID, sjujuUID)
	files := []image.File{
		{Path: "bin/busybox", Mode: 0o755, Data: data},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Path: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Path: "tmp", Mode: 0o1777, Dir: true},
		{Path: "var/lib/juju", Mode: 0o755, Dir: true},
		{Path: "root", Mode: 0o700, Dir: true},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && filepath.Base(applet) == applet {
			files = append(files, image.File{Path: "bin/" + applet, Link: "busybox"})
		}
	}
	return files, nil
}
