package api

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A client that connects and then trickles its request, or keeps an idle
// keep-alive connection, is cut off at the listener's bounds instead of
// holding a goroutine and a file descriptor for ever. The bounds are
// shortened here; DefaultTimeouts sets every one of them.
func TestServerCutsSlowAndIdleClients(t *testing.T) {
	for name, d := range map[string]time.Duration{"ReadHeader": DefaultTimeouts.ReadHeader, "Read": DefaultTimeouts.Read,
		"Write": DefaultTimeouts.Write, "Idle": DefaultTimeouts.Idle} {
		if d <= 0 {
			t.Fatalf("DefaultTimeouts.%s is unset", name)
		}
	}
	short := Timeouts{ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}), short)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	closedWithin := func(c net.Conn, limit time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(limit))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				ne, ok := err.(net.Error)
				return !(ok && ne.Timeout()) // EOF or reset: the server closed it
			}
		}
	}
	// A body that never comes.
	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_, _ = slow.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"))
	if !closedWithin(slow, 3*time.Second) {
		t.Fatal("a request whose body never comes holds its connection past the read timeout")
	}
	// An idle keep-alive connection after one request.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = idle.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if !closedWithin(idle, 3*time.Second) {
		t.Fatal("an idle keep-alive connection is held past the idle timeout")
	}
}
