package charm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/canonical/pebble/client"

	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/workload/api"
)

// get calls the workload's local API with GET.
func (c *Charm) get(path string, v any) error {
	return c.request(http.MethodGet, path, 3*time.Second, v)
}

// apiError is a workload API answer other than 200 OK; its message is the
// workload's own, written for operators.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// request calls the workload's local API and decodes a 200 answer into v.
func (c *Charm) request(method, path string, timeout time.Duration, v any) error {
	return c.send(method, path, timeout, nil, v)
}

// send is request with a JSON body, in (none when nil).
func (c *Charm) send(method, path string, timeout time.Duration, in, v any) error {
	payload, err := api.Body(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, c.APIBase+path, payload)
	if err != nil {
		return err
	}
	if key := c.apiKey(); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := api.HTTPClient(timeout).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = resp.Status
		}
		return &apiError{code: resp.StatusCode, msg: msg}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s: the answer is not what this charm expects: %w", method, path, err)
	}
	return nil
}

// apiKey is the local API's key, read through Pebble from the file the
// controller keeps it in, once per hook; "" while there is none (the
// controller has not started), when the API answers 401 saying so.
func (c *Charm) apiKey() string {
	if c.localKey != "" {
		return c.localKey
	}
	if b, err := c.pull(plan.APIKeyFile); err == nil {
		c.localKey = strings.TrimSpace(string(b))
	}
	return c.localKey
}

// pull reads a file of the workload container through Pebble (path is
// the container's; under Layout.ContainerRoot on a host).
func (c *Charm) pull(path string) ([]byte, error) {
	root, _, _ := c.containerLayout()
	var b bytes.Buffer
	err := c.pebbleClient().Pull(&client.PullOptions{Path: root + path, Target: &b})
	return b.Bytes(), err
}
