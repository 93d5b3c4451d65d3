package api

import (
	"net/http"
	"time"
)

// Timeouts bound what one connection to a calico-lb listener may hold:
// headers and bodies sent slowly, answers read slowly, idle keep-alive
// connections. Without them a client that opens connections and sends
// nothing keeps a goroutine and a file descriptor each, for ever.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultTimeouts are every listener's: requests are small and answers
// quick, except the local API's actions (WriteTimeout there is longer).
var DefaultTimeouts = Timeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 10 * time.Second, Idle: time.Minute}

// Server is an http.Server for h with the timeouts t.
func Server(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle}
}
