// Package pebble applies the charm's plan to the workload container's
// Pebble: it pushes only files whose content changed and replans only when
// the layer changed, so a config change reaches the workload as a file
// (which it reloads) and never as a restart.
package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/canonical/pebble/client"

	"github.com/calico-lb/calico-lb/charm/plan"
)

// Client is the part of Pebble's client the charm uses; goops'
// PebbleClient and *client.Client both have it.
type Client interface {
	SysInfo() (*client.SysInfo, error)
	Push(*client.PushOptions) error
	Pull(*client.PullOptions) error
	AddLayer(*client.AddLayerOptions) error
	PlanBytes(*client.PlanOptions) ([]byte, error)
	Replan(*client.ServiceOptions) (string, error)
	Stop(*client.ServiceOptions) (string, error)
	WaitChange(string, *client.WaitChangeOptions) (*client.Change, error)
}

// Label is the label of the charm's layer.
const Label = "calico-lb"

// Result says what Apply did.
type Result struct {
	Pushed    []string // paths of the files written
	Replanned bool
}

// Apply makes the container match p.
func Apply(c Client, p *plan.Plan, wait time.Duration) (Result, error) {
	var res Result
	var kept []plan.File // unchanged content, so not pushed
	for _, f := range p.Files {
		var cur bytes.Buffer
		err := c.Pull(&client.PullOptions{Path: f.Path, Target: &cur})
		if err == nil && bytes.Equal(cur.Bytes(), f.Content) {
			kept = append(kept, f)
			continue
		}
		if err := push(c, f); err != nil {
			return res, err
		}
		res.Pushed = append(res.Pushed, f.Path)
	}
	before, err := c.PlanBytes(nil)
	if err != nil {
		return res, fmt.Errorf("read Pebble plan: %w", err)
	}
	if err := c.AddLayer(&client.AddLayerOptions{Combine: true, Label: Label, LayerData: p.Layer}); err != nil {
		return res, fmt.Errorf("add Pebble layer: %w", err)
	}
	after, err := c.PlanBytes(nil)
	if err != nil {
		return res, fmt.Errorf("read Pebble plan: %w", err)
	}
	if bytes.Equal(before, after) {
		return res, nil
	}
	// The layer changed, and with it perhaps the user the workload runs
	// as: files it owns are pushed again, so that an existing file gets
	// its new owner (Pull does not say who owns a file).
	for _, f := range kept {
		if f.UID != nil {
			if err := push(c, f); err != nil {
				return res, err
			}
			res.Pushed = append(res.Pushed, f.Path)
		}
	}
	id, err := c.Replan(&client.ServiceOptions{})
	if err != nil {
		return res, fmt.Errorf("replan: %w", err)
	}
	res.Replanned = true
	if wait > 0 {
		ch, err := c.WaitChange(id, &client.WaitChangeOptions{Timeout: wait})
		if err != nil {
			return res, fmt.Errorf("wait for replan: %w", err)
		}
		if ch != nil && ch.Err != "" {
			return res, fmt.Errorf("replan: %w", errors.New(ch.Err))
		}
	}
	return res, nil
}

func push(c Client, f plan.File) error {
	if err := c.Push(&client.PushOptions{Source: bytes.NewReader(f.Content), Path: f.Path,
		Permissions: os.FileMode(f.Mode), UserID: f.UID, GroupID: f.GID, MakeDirs: true}); err != nil {
		return fmt.Errorf("push %s: %w", f.Path, err)
	}
	return nil
}
