package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an OCI registry in this process (go-containerregistry's),
// serving plain HTTP on an address the nodes reach, so that their kubelets
// pull images as in production.
type Registry struct {
	Host string // host:port, the prefix of the images' names
	srv  *http.Server
}

// StartRegistry serves a registry on addr (host:port; port 0 picks one).
func StartRegistry(addr string) (*Registry, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("test registry: %v", err)
		}
	}()
	return &Registry{Host: ln.Addr().String(), srv: srv}, nil
}

// Ref is the full name of image (name:tag) in this registry.
func (r *Registry) Ref(image string) string { return r.Host + "/" + image }

// Push puts img into the registry as image (name:tag).
func (r *Registry) Push(ctx context.Context, image string, img v1.Image) error {
	ref, err := name.ParseReference(r.Ref(image), name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// Close stops serving.
func (r *Registry) Close() error { return r.srv.Close() }
