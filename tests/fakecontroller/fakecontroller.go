// Package fakecontroller is an in-process Juju controller for tests: a TLS
// websocket server speaking the controller's JSON RPC for the calls
// calico-lb makes (Admin.Login v3, Pinger.Ping, Application.Get,
// Application.SetConfigs), written from the wire format rather than with
// Juju's server code, so that the real client library is checked against
// what a controller sends and expects. It records every request.
package fakecontroller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Option is one charm config option of an application.
type Option struct {
	Type    string // string, boolean, int
	Value   any    // the effective value (nil: unset, no default)
	Default any
}

// Access is what a user may do in a model.
type Access string

const (
	Read  Access = "read"
	Write Access = "write"
)

// User is a controller user with a password and access to some models.
type User struct {
	Password string
	Models   map[string]Access // model UUID -> access
}

// AppStatus is an application's status as its leader set it.
type AppStatus struct {
	Status, Info string
}

// Call is one request the server received.
type Call struct {
	Facade  string
	Version int
	Method  string
	Params  json.RawMessage
	User    string // "" before login
	Model   string
}

// Controller is the fake. Set its fields before clients connect; read
// them (and Calls) under Lock.
type Controller struct {
	sync.Mutex
	Users map[string]User
	// Apps holds each model's applications' config.
	Apps map[string]map[string]map[string]Option
	// Delay holds back every answer (timeouts).
	Delay time.Duration
	// ApplicationVersion is the Application facade version offered (20, as 3.6).
	ApplicationVersion int
	// Statuses holds each model's applications' status, for FullStatus.
	Statuses map[string]map[string]AppStatus
	Calls    []Call

	srv    *httptest.Server
	CACert string // PEM
	UUID   string
}

// Start runs a controller until the test ends.
func Start(t testing.TB) *Controller { return StartAt(t, "127.0.0.1") }

// StartAt is Start listening on ip (the address pods reach, on a bed),
// with a certificate for it.
func StartAt(t testing.TB, ip string) *Controller {
	t.Helper()
	c, err := Listen(ip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Listen runs a controller on ip, with a certificate for it, until Close.
func Listen(ip string) (*Controller, error) {
	c := &Controller{Users: map[string]User{}, Apps: map[string]map[string]map[string]Option{}, Statuses: map[string]map[string]AppStatus{}, ApplicationVersion: 20,
		UUID: "deadbeef-0000-4000-8000-00000000c0de"}
	caPEM, cert, err := certificates(net.ParseIP(ip))
	if err != nil {
		return nil, err
	}
	c.CACert = caPEM
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	c.srv.Listener.Close()
	c.srv.Listener = ln
	c.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	c.srv.StartTLS()
	return c, nil
}

// Close stops the controller.
func (c *Controller) Close() { c.srv.Close() }

// Address is host:port, as in controller-addresses.
func (c *Controller) Address() string { return strings.TrimPrefix(c.srv.URL, "https://") }

// CallsTo returns the recorded calls of one facade method.
func (c *Controller) CallsTo(facade, method string) []Call {
	c.Lock()
	defer c.Unlock()
	var out []Call
	for _, call := range c.Calls {
		if call.Facade == facade && call.Method == method {
			out = append(out, call)
		}
	}
	return out
}

type request struct {
	RequestID uint64          `json:"request-id"`
	Type      string          `json:"type"`
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	Request   string          `json:"request"`
	Params    json.RawMessage `json:"params"`
}

type reply struct {
	RequestID uint64 `json:"request-id"`
	Error     string `json:"error,omitempty"`
	ErrorCode string `json:"error-code,omitempty"`
	Response  any    `json:"response"`
}

// rpcError is an error answer, with Juju's error code.
type rpcError struct{ msg, code string }

func (c *Controller) serve(w http.ResponseWriter, r *http.Request) {
	// /model/<uuid>/api, or /api for the controller itself.
	model := ""
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/model/") && strings.HasSuffix(p, "/api"):
		model = strings.TrimSuffix(strings.TrimPrefix(p, "/model/"), "/api")
	case p == "/api":
	default:
		http.NotFound(w, r)
		return
	}
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	user := ""
	for {
		var req request
		if err := ws.ReadJSON(&req); err != nil {
			return
		}
		c.Lock()
		c.Calls = append(c.Calls, Call{Facade: req.Type, Version: req.Version, Method: req.Request, Params: req.Params, User: user, Model: model})
		delay := c.Delay
		c.Unlock()
		time.Sleep(delay)
		resp, rerr := c.handle(&user, model, req)
		out := reply{RequestID: req.RequestID, Response: resp}
		if rerr != nil {
			out.Error, out.ErrorCode, out.Response = rerr.msg, rerr.code, nil
		}
		if err := ws.WriteJSON(out); err != nil {
			return
		}
	}
}

func (c *Controller) handle(user *string, model string, req request) (any, *rpcError) {
	c.Lock()
	defer c.Unlock()
	if req.Type == "Admin" && req.Request == "Login" {
		if req.Version != 3 {
			return nil, &rpcError{fmt.Sprintf("unknown version %d of interface \"Admin\"", req.Version), "not implemented"}
		}
		return c.login(user, model, req.Params)
	}
	if *user == "" {
		return nil, &rpcError{`login failed: not logged in`, "login required"}
	}
	switch req.Type + "." + req.Request {
	case "Pinger.Ping":
		return struct{}{}, nil
	case "Application.Get":
		if req.Version != c.ApplicationVersion {
			return nil, &rpcError{fmt.Sprintf("unknown version %d of interface \"Application\"", req.Version), "not implemented"}
		}
		var p struct {
			App string `json:"application"`
		}
		_ = json.Unmarshal(req.Params, &p)
		app, ok := c.Apps[model][p.App]
		if !ok {
			return nil, &rpcError{fmt.Sprintf("application %q not found", p.App), "not found"}
		}
		cfg := map[string]any{}
		for name, o := range app {
			source := "user"
			if o.Value == nil || o.Value == o.Default {
				source = "default"
			}
			entry := map[string]any{"type": o.Type, "description": name, "source": source}
			if o.Value != nil {
				entry["value"] = o.Value
			}
			if o.Default != nil {
				entry["default"] = o.Default
			}
			cfg[name] = entry
		}
		return map[string]any{"application": p.App, "charm": p.App, "config": cfg, "constraints": map[string]any{},
			"base": map[string]any{"name": "ubuntu", "channel": "24.04"}, "channel": "stable"}, nil
	case "Client.FullStatus":
		if req.Version != 8 {
			return nil, &rpcError{fmt.Sprintf("unknown version %d of interface \"Client\"", req.Version), "not implemented"}
		}
		var p struct {
			Patterns []string `json:"patterns"`
		}
		_ = json.Unmarshal(req.Params, &p)
		apps := map[string]any{}
		for name := range c.Apps[model] {
			if len(p.Patterns) > 0 && !slices.Contains(p.Patterns, name) {
				continue
			}
			st, ok := c.Statuses[model][name]
			if !ok {
				st = AppStatus{Status: "unknown"}
			}
			apps[name] = map[string]any{"charm": name, "units": map[string]any{},
				"status": map[string]any{"status": st.Status, "info": st.Info, "data": map[string]any{}}}
		}
		return map[string]any{"model": map[string]any{"name": "m"}, "applications": apps, "machines": map[string]any{}}, nil
	case "Application.SetConfigs":
		if c.Users[*user].Models[model] != Write {
			return nil, &rpcError{"permission denied", "unauthorized access"}
		}
		var p struct {
			Args []struct {
				App        string            `json:"application"`
				Config     map[string]string `json:"config"`
				ConfigYAML string            `json:"config-yaml"`
			} `json:"Args"`
		}
		_ = json.Unmarshal(req.Params, &p)
		var results []map[string]any
		for _, a := range p.Args {
			results = append(results, map[string]any{"error": c.set(model, a.App, a.ConfigYAML, a.Config)})
		}
		return map[string]any{"results": results}, nil
	}
	return nil, &rpcError{fmt.Sprintf("unknown object type %q", req.Type), "not implemented"}
}

func (c *Controller) login(user *string, model string, raw json.RawMessage) (any, *rpcError) {
	var p struct {
		AuthTag     string `json:"auth-tag"`
		Credentials string `json:"credentials"`
	}
	_ = json.Unmarshal(raw, &p)
	name := strings.TrimPrefix(p.AuthTag, "user-")
	u, ok := c.Users[name]
	if !strings.HasPrefix(p.AuthTag, "user-") || !ok || u.Password != p.Credentials {
		return nil, &rpcError{"invalid entity name or password (unauthorized access)", "unauthorized access"}
	}
	if model != "" {
		if _, known := c.Apps[model]; !known {
			return nil, &rpcError{fmt.Sprintf("unknown model: %q", model), "model not found"}
		}
		if u.Models[model] == "" {
			return nil, &rpcError{"permission denied", "unauthorized access"}
		}
	}
	*user = name
	host, port, _ := net.SplitHostPort(c.Address())
	var portN int
	fmt.Sscan(port, &portN)
	return map[string]any{
		"servers":        [][]map[string]any{{{"value": host, "port": portN, "type": "ipv4", "scope": "local-cloud"}}},
		"model-tag":      "model-" + model,
		"controller-tag": "controller-" + c.UUID,
		"user-info":      map[string]any{"display-name": name, "identity": "user-" + name, "controller-access": "login", "model-access": string(u.Models[model])},
		"facades":        []map[string]any{{"name": "Application", "versions": []int{c.ApplicationVersion}}, {"name": "Client", "versions": []int{8}}, {"name": "Pinger", "versions": []int{1}}},
		"server-version": "3.6.12",
	}, nil
}

func (c *Controller) set(model, appName, yaml string, values map[string]string) map[string]any {
	if yaml != "" {
		return map[string]any{"message": "config yaml not supported", "code": "not implemented"}
	}
	app, ok := c.Apps[model][appName]
	if !ok {
		return map[string]any{"message": fmt.Sprintf("application %q not found", appName), "code": "not found"}
	}
	for k, v := range values {
		o, ok := app[k]
		if !ok {
			return map[string]any{"message": fmt.Sprintf("unknown option %q", k), "code": ""}
		}
		o.Value = v
		app[k] = o
	}
	return nil
}

// certificates makes a CA and a server certificate for "juju-apiserver"
// (the name Juju's client verifies against a private CA) and 127.0.0.1.
func certificates(ip net.IP) (caPEM string, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", cert, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "juju-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", cert, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", cert, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "juju-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"juju-apiserver", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), ip}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", cert, err
	}
	cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), cert, nil
}

// WriteClientStore writes a Juju client store (as `juju login` leaves
// one) in dir for this controller, named "prod": logged in as user with
// password, with models (qualified name -> UUID) and current the current
// model. Point JUJU_DATA at dir.
func (c *Controller) WriteClientStore(dir, user, password string, models map[string]string, current string) error {
	var ms strings.Builder
	for name, uuid := range models {
		fmt.Fprintf(&ms, "      %s: {uuid: %s, type: iaas}\n", name, uuid)
	}
	ca := "      " + strings.ReplaceAll(strings.TrimRight(c.CACert, "\n"), "\n", "\n      ")
	files := map[string]string{
		"controllers.yaml": fmt.Sprintf("controllers:\n  prod:\n    uuid: %s\n    api-endpoints: [%q]\n    ca-cert: |\n%s\ncurrent-controller: prod\n", c.UUID, c.Address(), ca),
		"accounts.yaml":    fmt.Sprintf("controllers:\n  prod:\n    user: %s\n    password: %s\n    last-known-access: superuser\n", user, password),
		"models.yaml":      fmt.Sprintf("controllers:\n  prod:\n    models:\n%s    current-model: %s\n", ms.String(), current),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}
