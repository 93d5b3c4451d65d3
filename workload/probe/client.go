package probe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Client is the controller's side of a probe agent.
type Client struct {
	Base  string // http://host:port
	Token string // the agent's token
	HTTP  *http.Client
}

// Started is a run the agent began, with where its clock's zero falls on
// ours: half way through the request that started it, so off by at most
// half its round trip (Skew).
type Started struct {
	Report
	Zero time.Time
	Skew time.Duration
}

// At maps an offset on the run's clock to a time on ours.
func (s Started) At(offset time.Duration) time.Time { return s.Zero.Add(offset) }

// Start begins a run.
func (c Client) Start(ctx context.Context, req Request) (Started, error) {
	sent := time.Now()
	var r Report
	if err := c.do(ctx, http.MethodPost, "/v1/probes", req, &r); err != nil {
		return Started{}, err
	}
	rtt := time.Since(sent)
	return Started{Report: r, Zero: sent.Add(rtt / 2), Skew: rtt / 2}, nil
}

// Get reports a run; Stop ends it and reports it, final.
func (c Client) Get(ctx context.Context, id string) (Report, error) {
	var r Report
	return r, c.do(ctx, http.MethodGet, "/v1/probes/"+id, nil, &r)
}

// Stop ends a run and reports it, final.
func (c Client) Stop(ctx context.Context, id string) (Report, error) {
	var r Report
	return r, c.do(ctx, http.MethodDelete, "/v1/probes/"+id, nil, &r)
}

func (c Client) do(ctx context.Context, method, path string, body, out any) error {
	rd, err := api.Body(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("probe %s: %w", c.Base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = api.HTTPClient(5 * time.Second)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s unreachable: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("probe %s: %s: %s", c.Base, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := api.Decode(resp.Body, out); err != nil {
		return fmt.Errorf("probe %s: %w", c.Base, err)
	}
	return nil
}
