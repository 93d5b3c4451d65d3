// Package calicolink is the Calico link: it reads the calico charm's
// options over the Juju controller API and writes the service-IP option,
// for the charm (credentials from a Juju secret) and for calico-lb-juju
// (the operator's own client store). The Juju client sits behind Client,
// so the logic is tested without a controller and the real client against
// tests/fakecontroller.
package calicolink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-macaroon-bakery/macaroon-bakery/v3/httpbakery"
	"github.com/juju/juju/api"
	apiapplication "github.com/juju/juju/api/client/application"
	"github.com/juju/juju/rpc/params"
	"github.com/juju/names/v6"
)

// Credentials reach a Juju controller as a user.
type Credentials struct {
	Addresses []string // host:port
	CACert    string   // PEM
	Username  string
	Password  string
	// Jar holds login macaroons, for users of the client store who logged
	// in without a stored password (nil for the charm).
	Jar http.CookieJar
	// Model and Application, when the secret has them, pin where the link
	// may write: whoever may `juju config calico-lb` cannot then aim these
	// credentials at another model the user can write.
	Model, Application string
}

// The keys of the juju-credentials secret.
const (
	KeyAddresses = "controller-addresses"
	KeyCACert    = "ca-cert"
	KeyUsername  = "username"
	KeyPassword  = "password"
	// Optional: the target the credentials are for.
	KeyModel       = "calico-model"
	KeyApplication = "calico-application"
)

// Pinned checks that model and app are where the credentials may write,
// when the secret pins them.
func (c Credentials) Pinned(model, app string) error {
	switch {
	case c.Model != "" && c.Model != model:
		return &Error{Kind: Other, Msg: fmt.Sprintf("juju-credentials are for calico's model %s, but calico-model is %s: set calico-model=%s (or put the intended model in the secret's %s)", c.Model, model, c.Model, KeyModel)}
	case c.Application != "" && c.Application != app:
		return &Error{Kind: Other, Msg: fmt.Sprintf("juju-credentials are for the application %s, but calico-application is %s: set calico-application=%s (or put the intended one in the secret's %s)", c.Application, app, c.Application, KeyApplication)}
	}
	return nil
}

// CredentialsFromSecret reads the juju-credentials secret's content,
// naming each missing or malformed key.
func CredentialsFromSecret(m map[string]string) (Credentials, error) {
	var c Credentials
	var missing []string
	for _, k := range []string{KeyAddresses, KeyCACert, KeyUsername, KeyPassword} {
		if strings.TrimSpace(m[k]) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("juju-credentials: the secret lacks %s; create it with `juju add-secret calico-lb-juju %s=… %s#file=ca.pem %s=… %s=…`",
			strings.Join(missing, ", "), KeyAddresses, KeyCACert, KeyUsername, KeyPassword)
	}
	for _, a := range strings.FieldsFunc(m[KeyAddresses], func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("juju-credentials: %s: %q is not host:port such as 10.0.0.10:17070", KeyAddresses, a)
		}
		c.Addresses = append(c.Addresses, a)
	}
	if !strings.Contains(m[KeyCACert], "BEGIN CERTIFICATE") {
		return c, fmt.Errorf("juju-credentials: %s is not a PEM certificate; take it from `juju show-controller` (details.ca-cert)", KeyCACert)
	}
	if !names.IsValidUser(m[KeyUsername]) {
		return c, fmt.Errorf("juju-credentials: %s %q is not a Juju user name", KeyUsername, m[KeyUsername])
	}
	c.CACert, c.Username, c.Password = m[KeyCACert], m[KeyUsername], m[KeyPassword]
	c.Model, c.Application = strings.TrimSpace(m[KeyModel]), strings.TrimSpace(m[KeyApplication])
	return c, nil
}

// Client is what the link needs of a model's controller API.
type Client interface {
	// Config returns the application's charm config values; an option the
	// charm does not have is absent.
	Config(ctx context.Context, app string) (map[string]any, error)
	// SetConfig sets options to string values.
	SetConfig(ctx context.Context, app string, values map[string]string) error
	// AppStatus returns the application's status and message, as its
	// leader set them.
	AppStatus(ctx context.Context, app string) (status, message string, err error)
	Close() error
}

// Timeouts bound a hook's use of the controller: a hook must never hang.
type Timeouts struct {
	Dial time.Duration // connecting and logging in
	Call time.Duration // each call
}

// DefaultTimeouts suit a hook.
var DefaultTimeouts = Timeouts{Dial: 10 * time.Second, Call: 10 * time.Second}

// Dial connects to model on the controller as the user.
func Dial(ctx context.Context, c Credentials, model string, t Timeouts) (Client, error) {
	if !names.IsValidModel(model) {
		return nil, &Error{Kind: NoModel, Msg: fmt.Sprintf("calico-model %q is not a model UUID", model)}
	}
	info := &api.Info{Addrs: c.Addresses, CACert: c.CACert, ModelTag: names.NewModelTag(model),
		Tag: names.NewUserTag(c.Username), Password: c.Password}
	opts := api.DefaultDialOpts()
	opts.Timeout, opts.RetryDelay, opts.DialTimeout = t.Dial, 500*time.Millisecond, t.Dial
	if c.Jar != nil {
		bc := httpbakery.NewClient()
		bc.Client.Jar = c.Jar
		opts.BakeryClient = bc
	}
	// api.Open's own timeout does not cover everything (closing a
	// connection whose login is unanswered waits for the answer), so the
	// bound is enforced here too: a hook must never hang on a controller.
	type opened struct {
		conn api.Connection
		err  error
	}
	done := make(chan opened, 1)
	go func() {
		conn, err := api.Open(ctx, info, opts)
		done <- opened{conn, err}
	}()
	var o opened
	select {
	case o = <-done:
	case <-time.After(t.Dial + time.Second):
		go func() {
			if late := <-done; late.conn != nil {
				late.conn.Close()
			}
		}()
		return nil, &Error{TimedOut, fmt.Sprintf("the Juju controller at %s did not answer within %s", strings.Join(c.Addresses, ", "), t.Dial+time.Second)}
	}
	conn, err := o.conn, o.err
	if err != nil {
		return nil, classify(err, c, model, "")
	}
	return &jujuClient{conn: conn, app: apiapplication.NewClient(conn), creds: c, model: model, timeout: t.Call}, nil
}

type jujuClient struct {
	conn    api.Connection
	app     *apiapplication.Client
	creds   Credentials
	model   string
	timeout time.Duration
}

func (j *jujuClient) Config(ctx context.Context, app string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	res, err := j.app.Get(ctx, app)
	if err != nil {
		return nil, classify(err, j.creds, j.model, app)
	}
	out := map[string]any{}
	for k, v := range res.CharmConfig {
		if m, ok := v.(map[string]any); ok {
			out[k] = m["value"]
		}
	}
	return out, nil
}

func (j *jujuClient) SetConfig(ctx context.Context, app string, values map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	// The YAML form is refused by Juju 4 controllers; the map works on all.
	if err := j.app.SetConfig(ctx, app, "", values); err != nil {
		return classify(err, j.creds, j.model, app)
	}
	return nil
}

func (j *jujuClient) AppStatus(ctx context.Context, app string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	// The Client facade's FullStatus, called directly: its client package
	// wants a logger of Juju's own for nothing this needs.
	var res params.FullStatus
	if err := j.conn.APICall(ctx, "Client", j.conn.BestFacadeVersion("Client"), "", "FullStatus", params.StatusParams{Patterns: []string{app}}, &res); err != nil {
		return "", "", classify(err, j.creds, j.model, app)
	}
	st, ok := res.Applications[app]
	if !ok {
		return "", "", &Error{NoApplication, fmt.Sprintf("model %s has no application %q", j.model, app)}
	}
	return st.Status.Status, st.Status.Info, nil
}

func (j *jujuClient) Close() error { return j.conn.Close() }

// Kind sorts link errors for the status line.
type Kind string

const (
	Unreachable    Kind = "unreachable"
	BadCredentials Kind = "bad-credentials"
	NoModel        Kind = "no-model"
	NoApplication  Kind = "no-application"
	Denied         Kind = "permission-denied"
	TimedOut       Kind = "timed-out"
	LacksOption    Kind = "lacks-option"
	Other          Kind = "other"
)

// Error is a link failure, worded for the operator. It never carries the
// password.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// classify turns a Juju client error into an Error that says what to do.
func classify(err error, c Credentials, model, app string) error {
	addrs := strings.Join(c.Addresses, ", ")
	msg := scrub(err.Error(), c.Password)
	switch {
	case errors.Is(err, api.ConnectionOpenTimedOut) || errors.Is(err, context.DeadlineExceeded):
		return &Error{TimedOut, fmt.Sprintf("the Juju controller at %s did not answer in time (%s)", addrs, msg)}
	case strings.Contains(msg, "x509") || strings.Contains(msg, "certificate"):
		return &Error{Unreachable, fmt.Sprintf("the Juju controller at %s has a certificate its ca-cert does not vouch for: %s", addrs, msg)}
	case errors.Is(err, api.ConnectionFailure):
		return &Error{Unreachable, fmt.Sprintf("cannot reach the Juju controller at %s: %s", addrs, msg)}
	case params.ErrCode(err) == params.CodeModelNotFound:
		return &Error{NoModel, fmt.Sprintf("the Juju controller has no model %s; set calico-model to the UUID of calico's model (`juju show-model <model>`)", model)}
	case params.IsCodeUnauthorized(err) && app == "" && strings.Contains(msg, "password"):
		return &Error{BadCredentials, fmt.Sprintf("the Juju controller refused user %s's password; check juju-credentials", c.Username)}
	case params.IsCodeUnauthorized(err) && app == "":
		return &Error{Denied, fmt.Sprintf("user %s may not use model %s: `juju grant %s write <calico's model>`", c.Username, model, c.Username)}
	case params.IsCodeUnauthorized(err):
		return &Error{Denied, fmt.Sprintf("user %s may not change %s's config: `juju grant %s write <calico's model>`", c.Username, app, c.Username)}
	case params.IsCodeNotFound(err):
		return &Error{NoApplication, fmt.Sprintf("model %s has no application %q; set calico-application", model, app)}
	}
	return &Error{Other, fmt.Sprintf("Juju API: %s", msg)}
}

// scrub removes the password from a message, should a library ever echo it.
func scrub(msg, password string) string {
	if password == "" {
		return msg
	}
	return strings.ReplaceAll(msg, password, "********")
}
