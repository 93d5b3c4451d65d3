// Command echo is the test application behind the tests' Services: an
// HTTP server that answers with what it saw of the connection, so a test
// knows which pod answered and whether the client's own address arrived
// (externalTrafficPolicy: Local keeps it; Cluster may not).
//
//	{"client":"10.212.3.2:41234","server":"10.244.1.5:8080","pod":"web-7c9-abc","node":"node1"}
package main

import (
	"encoding/json"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

// Answer is what the server replies.
type Answer struct {
	Client string `json:"client"`
	Server string `json:"server"`
	Pod    string `json:"pod"`
	Node   string `json:"node"`
}

func main() {
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	pod, _ := os.Hostname()
	node := os.Getenv("NODE_NAME")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		a := Answer{Client: r.RemoteAddr, Pod: pod, Node: node}
		if local != nil {
			a.Server = local.String()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("echo listening on %s (pod %s, node %s)", addr, pod, node)
	log.Fatal(srv.ListenAndServe())
}
