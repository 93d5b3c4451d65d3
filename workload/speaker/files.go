package speaker

import (
	"context"
	"os"
)

// Files is where a speaker reads its config, BGP passwords and heartbeat
// keys, by path. In its pod they come from the speakers'
// ConfigMap and Secret through the API (KubeFiles), so that a change
// reaches a running speaker in a second, where a mounted volume would wait
// for the kubelet's next sync (a minute by default) and a SubPath mount
// would never update at all.
type Files interface {
	// Start begins watching, until ctx ends.
	Start(ctx context.Context)
	ReadFile(path string) ([]byte, error)
	// Changed is signalled when a file may have changed; a nil channel
	// (OSFiles) means the speaker finds changes by polling alone.
	Changed() <-chan struct{}
}

// OSFiles reads the local file system: a speaker run by hand, and tests.
type OSFiles struct{}

func (OSFiles) Start(context.Context)                {}
func (OSFiles) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }
func (OSFiles) Changed() <-chan struct{}             { return nil }
