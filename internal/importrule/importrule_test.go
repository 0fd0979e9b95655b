// Package importrule holds README's import rule with a test: the filter
// never links Redis, metrics or network packages (it runs in Envoy's Wasm
// VM, whose only I/O is the proxy-wasm ABI), the control plane never links
// proxy-wasm, and the wire contract they share is standard library only.
package importrule

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deps lists the packages pkgs link, as `go list -deps` sees them with env.
func deps(t *testing.T, env []string, pkgs ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	cmd := exec.Command(gobin, append([]string{"list", "-deps"}, pkgs...)...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", pkgs, err)
	}
	return strings.Fields(string(out))
}

func TestImportRule(t *testing.T) {
	tests := []struct {
		name   string
		env    []string
		pkgs   []string
		banned func(dep string) bool
	}{
		{
			name: "the filter links no network, Redis, metrics or Envoy API package",
			env:  []string{"GOOS=wasip1", "GOARCH=wasm"},
			pkgs: []string{"./plugin/..."},
			banned: func(d string) bool {
				return d == "net" || strings.HasPrefix(d, "net/") ||
					strings.Contains(d, "github.com/redis/") ||
					strings.Contains(d, "github.com/prometheus/") ||
					strings.Contains(d, "github.com/envoyproxy/")
			},
		},
		{
			name:   "the control plane links no proxy-wasm package",
			pkgs:   []string{"./controlplane/..."},
			banned: func(d string) bool { return strings.Contains(d, "github.com/proxy-wasm/") },
		},
		{
			name: "the wire contract is standard library only",
			pkgs: []string{"./controlplane/api"},
			banned: func(d string) bool {
				first, _, _ := strings.Cut(d, "/")
				return strings.Contains(first, ".") && d != "github.com/idemgate/idemgate/controlplane/api"
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := deps(t, tc.env, tc.pkgs...)
			if len(all) < 5 {
				t.Fatalf("go list gave %d packages for %v: %v", len(all), tc.pkgs, all)
			}
			for _, d := range all {
				if tc.banned(d) {
					t.Errorf("%v links %s", tc.pkgs, d)
				}
			}
		})
	}
}
