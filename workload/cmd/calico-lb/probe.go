package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/probe"
	"github.com/calico-lb/calico-lb/workload/speaker"
)

// runProbe serves the probe agent the failover test asks to time a VIP's
// outage as a client outside the cluster sees it.
func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	listen := fs.String("listen", ":9477", "where the controller reaches this agent (the failover-test action's probe=http://HOST:PORT)")
	allow := fs.String("allow", "", "the load-balancer pools' ranges, comma-separated CIDRs (required): the only addresses this agent opens connections to")
	tokenFile := fs.String("token-file", "", "a file with the token callers must present (the failover-test action's probe-token=); created with a random token if it does not exist. Without it, a random token is printed at start")
	_ = fs.Parse(args)
	prefixes, err := parseAllow(*allow)
	if err != nil {
		return err
	}
	token, err := probeToken(*tokenFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("probe: --listen: %w", err)
	}
	fmt.Fprintf(os.Stderr, "calico-lb probe: serving on %s, probing only %s\n", ln.Addr(), *allow)
	if *tokenFile == "" {
		fmt.Fprintf(os.Stderr, "calico-lb probe: token %s (pass the failover-test action probe-token=%s)\n", token, token)
	} else {
		fmt.Fprintf(os.Stderr, "calico-lb probe: the token is in %s (pass it as the failover-test action's probe-token=)\n", *tokenFile)
	}
	srv := api.Server((&probe.Agent{Allow: prefixes, Token: token}).Handler(), api.DefaultTimeouts)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// probeToken reads the agent's token from path, writing a new one there
// (0600) if there is none; with no path, a new one for this run.
func probeToken(path string) (string, error) {
	if path == "" {
		return speaker.NewKey(), nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		token := speaker.NewKey()
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("probe: --token-file: %w", err)
		}
		return token, nil
	}
	if err != nil {
		return "", fmt.Errorf("probe: --token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if len(token) < probe.MinTokenLen || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("probe: --token-file %s: want one token of at least %d characters without spaces; delete the file to have a new one written", path, probe.MinTokenLen)
	}
	return token, nil
}

func parseAllow(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("probe: --allow is required: give the load-balancer pools' ranges, e.g. --allow 10.0.0.0/24,fd00:10::/120")
	}
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("probe: --allow %q: want CIDRs such as 10.0.0.0/24", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
