package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// HTTPClient is the client every calico-lb component uses to call another
// (the charm the workload, the controller the speakers and the probe): it
// never follows a redirect, since an answer is only ever JSON from the
// server asked, and a hostile speaker or probe could otherwise send the
// controller to its own local API (a 307 to 127.0.0.1:9402/v1/reallocate).
func HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// MaxAnswer bounds what a client reads of an answer: more than any report
// calico-lb sends (a speaker's /v1/bgp with 100,000 routes is some 3 MiB),
// and little enough that a hostile server cannot fill the caller's memory.
const MaxAnswer = 32 << 20

// Decode reads JSON into v from at most MaxAnswer bytes of r.
func Decode(r io.Reader, v any) error {
	lr := &io.LimitedReader{R: r, N: MaxAnswer + 1}
	if err := json.NewDecoder(lr).Decode(v); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("answer longer than %d bytes", MaxAnswer)
		}
		return err
	}
	return nil
}
