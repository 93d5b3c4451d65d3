package pebble

import (
	"errors"

	"github.com/canonical/pebble/client"
	"github.com/gruyaume/goops"
)

// Run runs a command in the container to its end. Pebble's own client and
// goops' differ in what Exec returns, which is why Client leaves it out.
func Run(c Client, opts *client.ExecOptions) error {
	var wait func() error
	switch p := c.(type) {
	case interface {
		Exec(*client.ExecOptions) (*client.ExecProcess, error)
	}:
		proc, err := p.Exec(opts)
		if err != nil {
			return err
		}
		wait = proc.Wait
	case interface {
		Exec(*client.ExecOptions) (goops.PebbleExecProcess, error)
	}:
		proc, err := p.Exec(opts)
		if err != nil {
			return err
		}
		if proc == nil {
			return errors.New("no process started: Pebble returned none")
		}
		wait = proc.Wait
	default:
		return errors.New("this Pebble client cannot exec")
	}
	return wait()
}
