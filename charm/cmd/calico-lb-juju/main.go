// Command calico-lb-juju is the Calico link run by an operator with their
// own Juju login, for those who do not give credentials to the charm.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/calico-lb/calico-lb/charm/calicolink"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := calicolink.CLI(ctx, os.Args[1:], os.Stdin, os.Stdout)
	stop()
	os.Exit(code)
}
