package netns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// inNS runs fn on a thread that has joined namespace ns, then moves the
// thread back. A socket keeps the namespace it was created in, so
// listeners and connections made by fn work from any goroutine afterwards.
//
// The thread must go back rather than be discarded: a child process
// started with Pdeathsig (as the test beds start theirs) is killed when the
// thread that forked it exits, and that may be this one.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		err = fn()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // back home: safe to reuse
		} // else stay locked: the runtime then discards the thread
		errc <- err
	}()
	return <-errc
}

// HTTPClient is an HTTP client whose connections are made from inside ns,
// each request limited to limit: a client in the bed, as a user's would be.
func HTTPClient(ns string, limit time.Duration) *http.Client {
	return &http.Client{Timeout: limit, Transport: &http.Transport{DisableKeepAlives: true, DialContext: Dialer(ns, limit)}}
}

// Dialer opens connections from inside ns, each attempt limited to limit.
func Dialer(ns string, limit time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() (err error) {
			c, err = (&net.Dialer{Timeout: limit}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen opens a listener inside ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNS(ns, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}
