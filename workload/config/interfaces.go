package config

import (
	"fmt"
	"regexp"
	"slices"
)

var ifaceName = regexp.MustCompile(`^[^/\s:]{1,15}$`)

// checkInterfaces validates Linux interface names.
func (d *decoder) checkInterfaces(path string, names []string) []string {
	var out []string
	for i, name := range names {
		if !ifaceName.MatchString(name) || name == "." || name == ".." {
			d.errorf(fmt.Sprintf("%s[%d]", path, i), nil, "%q is not an interface name: at most 15 characters, without spaces, '/' or ':'", name)
			continue
		}
		if slices.Contains(out, name) {
			d.errorf(fmt.Sprintf("%s[%d]", path, i), nil, "interface %q is listed twice", name)
			continue
		}
		out = append(out, name)
	}
	return out
}
