// Package docs holds the reference documentation; its test keeps it in
// step with the code: every charm option, every action and every metric
// the code registers is documented.
package docs

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/speaker"
)

// corpus is every Markdown page under docs/.
func corpus(t *testing.T) string {
	t.Helper()
	pages, err := filepath.Glob("*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages: %v", err)
	}
	var b strings.Builder
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

func topKeys(t *testing.T, path, under string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if under != "" {
		m, _ = m[under].(map[string]any)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestOptionsAndActionsDocumented(t *testing.T) {
	docs := corpus(t)
	for _, o := range topKeys(t, "../config.yaml", "options") {
		if !strings.Contains(docs, "`"+o+"`") {
			t.Errorf("option %s (config.yaml) is not in docs/", o)
		}
	}
	for _, a := range topKeys(t, "../actions.yaml", "") {
		if !strings.Contains(docs, "`"+a+"`") {
			t.Errorf("action %s (actions.yaml) is not in docs/", a)
		}
	}
}

// metricName matches the name of a metric the code registers.
var metricName = regexp.MustCompile(`"(calico_lb_[a-z0-9_]+)"`)

func TestMetricsDocumented(t *testing.T) {
	docs := corpus(t)
	found := map[string]string{}
	for _, root := range []string{"../workload", "../charm"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range metricName.FindAllStringSubmatch(string(data), -1) {
				found[m[1]] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(found) < 10 {
		t.Fatalf("found only %d metrics in the code: %v", len(found), found)
	}
	for name, path := range found {
		if !strings.Contains(docs, "`"+name) {
			t.Errorf("metric %s (%s) is not in docs/", name, path)
		}
	}
}

// Every alert rule and every dashboard panel the charm ships is explained
// in docs/.
func TestAlertsAndPanelsDocumented(t *testing.T) {
	docs := corpus(t)
	rules, err := os.ReadFile("../charm/cos/alerts/calico-lb.rules")
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) < 7 {
		t.Fatalf("only %d alerts in the rules file", len(alerts))
	}
	for _, a := range alerts {
		if !strings.Contains(docs, "| `"+a[1]+"` |") {
			t.Errorf("alert %s is not in docs/observability.md's table", a[1])
		}
	}
	board, err := os.ReadFile("../charm/cos/dashboards/calico-lb.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct{ Type, Title string } `json:"panels"`
	}
	if err := json.Unmarshal(board, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		if p.Type != "row" && !strings.Contains(docs, "| "+p.Title+" |") {
			t.Errorf("panel %q is not in docs/observability.md's table", p.Title)
		}
	}
}

// The network prerequisites page names every port calico-lb listens on or
// sends to by default, as the code has them.
func TestNetworkPortsDocumented(t *testing.T) {
	data, err := os.ReadFile("network.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	_, apiPort, _ := strings.Cut(config.DefaultAPIAddress, ":")
	_, metricsPort, _ := strings.Cut(config.DefaultMetricsAddress, ":")
	for what, port := range map[string]string{
		"the local API":           apiPort,
		"metrics":                 metricsPort,
		"the speakers' status":    strconv.Itoa(config.DefaultSpeakerPort),
		"the L2 heartbeats":       strconv.Itoa(speaker.DefaultL2Port),
		"BGP":                     "179",
		"BFD":                     "3784",
		"the probe agent":         "9477",
		"the Juju controller API": "17070",
	} {
		if !strings.Contains(page, " "+port+" ") && !strings.Contains(page, " "+port+",") && !strings.Contains(page, " "+port+")") {
			t.Errorf("docs/network.md does not give the port of %s (%s)", what, port)
		}
	}
}

// configuration.md's table of options gives each option's type and
// default exactly as config.yaml has them.
func TestOptionTypesAndDefaults(t *testing.T) {
	data, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Options map[string]struct {
			Type    string `yaml:"type"`
			Default any    `yaml:"default"`
		} `yaml:"options"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9-]+)` \\| ([a-z]+) \\| `([^`]*)` \\|")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(page), -1) {
		name, typ, def := m[1], m[2], m[3]
		o, ok := cfg.Options[name]
		if !ok {
			continue // an action's row, or a pool key's
		}
		seen[name] = true
		want := fmt.Sprint(o.Default)
		if s, isStr := o.Default.(string); isStr {
			want = strconv.Quote(s)
			if s != "" {
				want = s
			}
		}
		if typ != o.Type || def != want {
			t.Errorf("configuration.md: %s is %s, default %s; config.yaml says %s, default %s", name, typ, def, o.Type, want)
		}
	}
	for name := range cfg.Options {
		if !seen[name] {
			t.Errorf("configuration.md's table has no row for %s", name)
		}
	}
}

// Every key the config decoder accepts in a pool or a peer is described in
// config.yaml, which is what `juju config calico-lb` shows users first.
func TestDecoderKeysInConfigHelp(t *testing.T) {
	help, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	field := regexp.MustCompile(`field\{"([a-z0-9-]+)"`)
	for _, src := range []string{"../workload/config/pools.go", "../workload/config/peers.go"} {
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		keys := field.FindAllStringSubmatch(string(code), -1)
		if len(keys) < 5 {
			t.Fatalf("%s: found only %d decoder keys; the pattern no longer matches the decoder", src, len(keys))
		}
		for _, k := range keys {
			if !regexp.MustCompile(`(^|[^a-z-])` + regexp.QuoteMeta(k[1]) + `([^a-z-]|$)`).Match(help) {
				t.Errorf("%s accepts %q, which config.yaml's descriptions do not mention", src, k[1])
			}
		}
	}
}

// Every action's parameters are in actions.md, each with its default
// written as name=default where actions.yaml gives one.
func TestActionParametersDocumented(t *testing.T) {
	data, err := os.ReadFile("../actions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var actions map[string]struct {
		Params map[string]struct {
			Type    string `yaml:"type"`
			Default any    `yaml:"default"`
		} `yaml:"params"`
	}
	if err := yaml.Unmarshal(data, &actions); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile("actions.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(page)
	for name, a := range actions {
		for p, spec := range a.Params {
			if !strings.Contains(doc, p+"=") && !strings.Contains(doc, "`"+p+"`") {
				t.Errorf("actions.md does not mention %s's parameter %s", name, p)
			}
			if spec.Default == nil {
				continue
			}
			if want := fmt.Sprintf("%s=%v", p, spec.Default); !strings.Contains(doc, want) {
				t.Errorf("actions.md does not give %s's default as %s (actions.yaml)", name, want)
			}
		}
	}
}

// others are the systems whose figures docs compare with.
var others = regexp.MustCompile(`(?i)\b(metallb|cilium|purelb|kube-vip|memberlist|frr-k8s)\b`)

// figure is a measured quantity: a number with a unit of time, size or rate.
var figure = regexp.MustCompile(`\b\d[\d.,]*(-\d[\d.,]*)?\s?(ns|µs|us|ms|s|min|MiB|MB|GiB|%|IP/s)\b`)

// Every figure given for another system names its source in the same
// paragraph, list item or table row: a public page (a link) or a command
// of this repository that measured it (`make …`). What cannot be sourced
// goes.
func TestFiguresOfOthersHaveSources(t *testing.T) {
	pages, _ := filepath.Glob("*.md")
	pages = append(pages, "../README.md")
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range blocks(string(data)) {
			if !others.MatchString(block) || !figure.MatchString(block) {
				continue
			}
			if !strings.Contains(block, "](http") && !strings.Contains(block, "`make ") {
				t.Errorf("%s gives a figure for another system without its source (a link, or the make target that measured it):\n%s", p, block)
			}
		}
	}
}

// blocks splits Markdown into paragraphs, list items and table rows.
func blocks(md string) []string {
	var out []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			flush()
		case strings.HasPrefix(trimmed, "|"):
			flush()
			out = append(out, line)
		case strings.HasPrefix(trimmed, "- ") || strings.HasPrefix(trimmed, "* "):
			flush()
			cur = append(cur, line)
		default:
			cur = append(cur, line)
		}
	}
	flush()
	return out
}

// Every package of the charm and the workload has its line in
// architecture.md's package list, and every line there names a package
// that exists.
func TestArchitectureListsEveryPackage(t *testing.T) {
	page, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(page)
	i := strings.Index(doc, "## Packages")
	if i < 0 {
		t.Fatal("architecture.md has no package list")
	}
	list := doc[i:]
	for _, top := range []string{"charm", "workload"} {
		err := filepath.WalkDir("../"+top, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			goFiles, _ := filepath.Glob(filepath.Join(path, "*.go"))
			if len(goFiles) == 0 || path == "../"+top {
				return nil
			}
			rel := strings.TrimPrefix(path, "../"+top+"/")
			if !strings.Contains(list, " "+rel+"/") && !strings.Contains(list, top+"/"+rel) && !strings.Contains(list, "cmd/"+strings.TrimPrefix(rel, "cmd/")) {
				t.Errorf("architecture.md's package list lacks %s/%s", top, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
