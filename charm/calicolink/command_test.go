package calicolink

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The command the status gives without the link keeps what calico's option
// already holds: run through a shell with a juju that answers config reads
// from a file and records writes, it adds our CIDRs once and drops none of
// the operator's.
func TestCommandKeepsWhatCalicoHas(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "option")
	juju := `#!/bin/sh
# juju config APP OPTION       -> the option's value
# juju config APP OPTION=VALUE -> sets it
case "$3" in
*=*) printf '%s' "${3#*=}" > "` + state + `" ;;
*) cat "` + state + `" ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "juju"), []byte(juju), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(cmd string) string {
		t.Helper()
		c := exec.Command("sh", "-c", cmd)
		c.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		b, _ := os.ReadFile(state)
		return string(b)
	}
	for _, tc := range []struct{ had, want string }{
		{"198.51.100.0/24", "10.208.1.0/24 198.51.100.0/24"},
		{"", "10.208.1.0/24"},
		{"10.208.1.0/24 198.51.100.0/24", "10.208.1.0/24 198.51.100.0/24"}, // run twice: nothing doubled
	} {
		if err := os.WriteFile(state, []byte(tc.had), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := Command("calico", "bgp-service-loadbalancer-ips", []string{"10.208.1.0/24"})
		if got := strings.TrimSpace(run(cmd)); got != tc.want {
			t.Fatalf("calico had %q; after %s it has %q, want %q", tc.had, cmd, got, tc.want)
		}
	}
}
