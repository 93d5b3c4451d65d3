// Package rock is the layout of the calico-lb workload image, which follows
// the rock convention: Pebble is the entrypoint and supervises calico-lb.
// The image builder lays files out by these names and the controller writes
// the speaker DaemonSet by them, so the two cannot disagree about where
// Pebble is (a DaemonSet that named /bin/pebble crash-looped on an image
// that has it at /usr/bin/pebble).
package rock

const (
	// Pebble is the Pebble binary.
	Pebble = "/usr/bin/pebble"
	// PebbleDir is $PEBBLE, Pebble's state directory, with its layers/.
	PebbleDir = "/var/lib/pebble/default"
	// Binary is calico-lb itself.
	Binary = "/usr/bin/calico-lb"
	// CACertificates is the CA bundle, where Go and most tools look first.
	CACertificates = "/etc/ssl/certs/ca-certificates.crt"
	// User and UID are the image's unprivileged user (the rock convention's
	// _daemon_), for what needs no privilege: the controller only talks to
	// the apiserver.
	User = "_daemon_"
	UID  = 584792
)

// Entrypoint is the image's entrypoint: Pebble runs the services of the
// layers in PebbleDir (or $PEBBLE) and any subcommand given after it.
var Entrypoint = []string{Pebble, "enter"}
