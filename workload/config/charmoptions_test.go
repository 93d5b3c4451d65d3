package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// charmConfig is the repository's config.yaml.
type charmConfig struct {
	Options yaml.Node `yaml:"options"`
}

type charmOption struct {
	Type        string `yaml:"type"`
	Default     any    `yaml:"default"`
	Description string `yaml:"description"`
}

// config.yaml and Options must not drift: the same options in the same
// order, the types Options expects, the defaults DefaultOptions has, and a
// description for each.
func TestCharmConfigYAMLMatchesOptions(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cc charmConfig
	if err := yaml.Unmarshal(data, &cc); err != nil {
		t.Fatal(err)
	}
	var names []string
	defaults := map[string]any{}
	var zero Options
	kinds := map[string]string{}
	for _, f := range zero.optionFields() {
		switch f.ptr.(type) {
		case *string:
			kinds[f.name] = "string"
		case *bool:
			kinds[f.name] = "boolean"
		case *int:
			kinds[f.name] = "int"
		}
	}
	for i := 0; i+1 < len(cc.Options.Content); i += 2 {
		name := cc.Options.Content[i].Value
		var opt charmOption
		if err := cc.Options.Content[i+1].Decode(&opt); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		names = append(names, name)
		want := kinds[name]
		if opt.Type == "secret" {
			opt.Type = "string" // a secret URI
		}
		if opt.Type != want {
			t.Errorf("%s: type %q in config.yaml, Options wants %q", name, opt.Type, want)
		}
		if strings.TrimSpace(opt.Description) == "" {
			t.Errorf("%s: no description", name)
		}
		defaults[name] = opt.Default
	}
	if !slices.Equal(names, OptionNames()) {
		t.Fatalf("config.yaml options %v\nOptions fields    %v", names, OptionNames())
	}
	got, err := OptionsFromMap(defaults)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, DefaultOptions()) {
		t.Fatalf("config.yaml defaults give %+v\nDefaultOptions is %+v", got, DefaultOptions())
	}
}

func TestOptionsFromMap(t *testing.T) {
	o, err := OptionsFromMap(map[string]any{"pools": "10.0.0.0/24", "as-number": float64(65001), "avoid-buggy-ips": false, "unknown": 1})
	if err != nil {
		t.Fatal(err)
	}
	if o.Pools != "10.0.0.0/24" || o.ASNumber != 65001 || o.AvoidBuggyIPs || o.PeeringMode != "auto" {
		t.Fatalf("got %+v", o)
	}
	_, err = OptionsFromMap(map[string]any{"as-number": 1.5, "pools": 3, "avoid-buggy-ips": "yes"})
	for _, want := range []string{"as-number", "pools", "avoid-buggy-ips"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
