package cos

import (
	"bytes"
	"crypto/rand"
	"crypto/sha3"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"
)

// Dashboard is calico-lb's Grafana dashboard, as shipped.
//
//go:embed dashboards/calico-lb.json
var Dashboard []byte

// DashboardPath is where the dashboard is in the charm (its uid derives
// from it, as COS derives charm dashboards' uids).
const DashboardPath = "src/grafana_dashboards/calico-lb.json"

// DashboardKey is the application data key grafana_dashboard reads.
const DashboardKey = "dashboards"

// dashboardTemplate is one entry of the dashboards data's templates.
type dashboardTemplate struct {
	Charm           string            `json:"charm"`
	Content         string            `json:"content"`
	JujuTopology    map[string]string `json:"juju_topology"`
	InjectDropdowns bool              `json:"inject_dropdowns"`
	AltUID          string            `json:"dashboard_alt_uid"`
}

// DashboardData is the grafana_dashboard provider's application data:
// {"templates": {"file:calico-lb": ...}, "uuid": ...}. The dashboard gets
// the uid and the charm tag COS gives a charm's dashboards, and is
// LZMA (xz)-compressed and base64-encoded; Grafana's side injects the
// topology dropdowns and matchers. The uuid is fresh each time, as the
// provider library does, so that a republish is seen as a change.
func DashboardData(t Topology) (string, error) {
	var d map[string]any
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		return "", fmt.Errorf("dashboard: %w", err)
	}
	d["uid"] = shake(CharmName+"-"+DashboardPath, 20)
	tags, _ := d["tags"].([]any)
	d["tags"] = append(tags, "charm: "+CharmName)
	raw, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	content, err := compress(raw)
	if err != nil {
		return "", err
	}
	id := "file:calico-lb"
	data := map[string]any{
		"templates": map[string]dashboardTemplate{id: {
			Charm: CharmName, Content: content, InjectDropdowns: true, AltUID: shake(CharmName+"-"+id, 8),
			JujuTopology: map[string]string{"model": t.Model, "model_uuid": t.ModelUUID, "application": t.Application, "unit": t.Unit},
		}},
		"uuid": newUUID(),
	}
	b, err := json.Marshal(data)
	return string(b), err
}

// DecodeDashboards returns the dashboards in DashboardData's output, by
// template id: what Grafana's side decodes.
func DecodeDashboards(data string) (map[string][]byte, error) {
	var d struct {
		Templates map[string]dashboardTemplate `json:"templates"`
	}
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for id, tmpl := range d.Templates {
		b, err := base64.StdEncoding.DecodeString(tmpl.Content)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		r, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if out[id], err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
	}
	return out, nil
}

// compress is the library's LZMABase64: Python's lzma.compress (the xz
// format), then base64.
func compress(b []byte) (string, error) {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(b); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// shake is hashlib.shake_256(s).hexdigest(n): n bytes, 2n hex digits.
func shake(s string, n int) string {
	return hex.EncodeToString(sha3.SumSHAKE256([]byte(s), n))
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Comparable is a dashboard without what DashboardData adds (the uid and
// the charm tag), in one canonical form: a published dashboard and the
// file it came from are Comparable-equal.
func Comparable(dashboard []byte) (string, error) {
	var d map[string]any
	if err := json.Unmarshal(dashboard, &d); err != nil {
		return "", err
	}
	delete(d, "uid")
	if tags, ok := d["tags"].([]any); ok {
		var kept []any
		for _, t := range tags {
			if t != "charm: "+CharmName {
				kept = append(kept, t)
			}
		}
		d["tags"] = kept
	}
	b, err := json.Marshal(d)
	return string(b), err
}
