package jujubed

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DeployCalico adds model on cloud and deploys the stand-in calico charm
// there (charms/calico: the real charm's options), set to values (as
// `juju config calico` takes them); it returns the model's UUID, which
// calico-lb's calico-model option names.
func (c *Controller) DeployCalico(ctx context.Context, dir, cloud, model string, values map[string]any) (string, error) {
	charmPath, err := StandInCharm(ctx, dir, "calico")
	if err != nil {
		return "", err
	}
	if _, err := c.Juju(ctx, "add-model", model, cloud); err != nil {
		return "", err
	}
	args := []string{"deploy", "-m", model, charmPath, "calico"}
	for k, v := range values {
		args = append(args, "--config", fmt.Sprintf("%s=%v", k, v))
	}
	if _, err := c.Juju(ctx, args...); err != nil {
		return "", err
	}
	out, err := c.Juju(ctx, "show-model", model, "--format=json")
	if err != nil {
		return "", err
	}
	var m map[string]struct {
		UUID string `json:"model-uuid"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", fmt.Errorf("juju show-model %s: %w", model, err)
	}
	for _, v := range m {
		return v.UUID, nil
	}
	return "", fmt.Errorf("juju show-model %s: no model", model)
}

// AppConfig is an application's options as `juju config APP` reports them.
func (c *Controller) AppConfig(ctx context.Context, model, app string) (map[string]any, error) {
	out, err := c.Juju(ctx, "config", "-m", model, app, "--format=json")
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Settings map[string]struct {
			Value any `json:"value"`
		} `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		return nil, fmt.Errorf("juju config %s: %w", app, err)
	}
	vals := map[string]any{}
	for k, s := range cfg.Settings {
		if s.Value != nil {
			vals[k] = s.Value
		}
	}
	return vals, nil
}

// FollowConfig polls app's options in model every second until ctx ends,
// and returns what reads the latest: a source for the racks bed's Calico
// stand-in, which then applies what the Calico link writes through Juju.
func (c *Controller) FollowConfig(ctx context.Context, model, app string, log func(string)) (func() map[string]any, error) {
	first, err := c.AppConfig(ctx, model, app)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	latest := first
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			vals, err := c.AppConfig(ctx, model, app)
			if err != nil {
				if ctx.Err() == nil && log != nil {
					log(fmt.Sprintf("following %s's config: %v", app, err))
				}
				continue
			}
			mu.Lock()
			latest = vals
			mu.Unlock()
		}
	}()
	return func() map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(latest)
	}, nil
}

// LinkUser is what docs/modes.md has an operator do for the Calico link:
// a Juju user with write access to calico's model, its password set, and
// the content of the secret calico-lb reads (controller-addresses, ca-cert,
// username, password), from `juju show-controller`.
func (c *Controller) LinkUser(ctx context.Context, user, password, model string) (map[string]string, error) {
	if _, err := c.Juju(ctx, "add-user", user); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, c.Bin.Juju, "change-user-password", user, "--no-prompt")
	cmd.Env = append(os.Environ(), c.Env()...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("juju change-user-password %s: %w\n%s", user, err, out)
	}
	if _, err := c.Juju(ctx, "grant", user, "write", model); err != nil {
		return nil, err
	}
	out, err := c.Juju(ctx, "show-controller", "--format=json")
	if err != nil {
		return nil, err
	}
	var sc map[string]struct {
		Details struct {
			APIEndpoints []string `json:"api-endpoints"`
			CACert       string   `json:"ca-cert"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(out), &sc); err != nil {
		return nil, fmt.Errorf("juju show-controller: %w", err)
	}
	d, ok := sc[c.Name]
	if !ok || len(d.Details.APIEndpoints) == 0 {
		return nil, fmt.Errorf("juju show-controller: no endpoints for %s:\n%s", c.Name, out)
	}
	return map[string]string{"controller-addresses": strings.Join(d.Details.APIEndpoints, ","), "ca-cert": d.Details.CACert,
		"username": user, "password": password}, nil
}

// AddSecret adds a user secret named name to model with content, as
// `juju add-secret` does (the CA certificate through a file, as the docs
// have it), and returns its URI.
func (c *Controller) AddSecret(ctx context.Context, dir, model, name string, content map[string]string) (string, error) {
	args := []string{"add-secret", "-m", model, name}
	for k, v := range content {
		if strings.Contains(v, "\n") {
			f := filepath.Join(dir, name+"-"+k)
			if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
				return "", err
			}
			args = append(args, k+"#file="+f)
			continue
		}
		args = append(args, k+"="+v)
	}
	out, err := c.Juju(ctx, args...)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}
