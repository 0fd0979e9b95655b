package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/internal/envoyfixture"
)

const (
	envoyYAML   = "../../envoy/envoy.yaml"
	twoRoutes   = "../../envoy/two-routes.yaml"
	envoyRoutes = "../../envoy/envoy-routes.yaml"
	fixtures    = "../../envoy/envoycheck/testdata"
	fixtureBase = fixtures + "/" + envoyfixture.BaseFile
)

// envoyCases writes envoycheck's cases (its base bootstrap with a patch
// each) to files check-envoy can read, and returns their paths by name.
func envoyCases(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	for _, name := range names {
		data, err := envoyfixture.Build(fixtures, name)
		if err != nil {
			t.Fatal(err)
		}
		paths[name] = filepath.Join(dir, name)
		if err := os.WriteFile(paths[name], data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func TestCheckEnvoy(t *testing.T) {
	cases := envoyCases(t, "retry_route.yaml", "idle_timeout_long.yaml", "route_metadata_unknown.yaml",
		"route_name_unknown.yaml", "unrouted_path.yaml", "schema_unknown_field.yaml")
	retryRoute, idleLong := cases["retry_route.yaml"], cases["idle_timeout_long.yaml"]
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout []string // substrings
		wantStderr []string // substrings
	}{
		{name: "clean", args: []string{"check-envoy", envoyYAML}, wantStdout: []string{envoyYAML + ": ok\n"}},
		{name: "the cases' base", args: []string{"check-envoy", fixtureBase}, wantStdout: []string{fixtureBase + ": ok\n"}},
		{name: "two clean files", args: []string{"check-envoy", envoyYAML, twoRoutes}, wantStdout: []string{envoyYAML + ": ok\n", twoRoutes + ": ok\n"}},
		{
			name: "retry on a governed route", args: []string{"check-envoy", envoyYAML, retryRoute}, wantCode: 1,
			wantStdout: []string{envoyYAML + ": ok\n", retryRoute + ": static_resources.listeners[0]", "routes[0].route.retry_policy: error: retries traffic the idemgate policy governs"},
		},
		{
			name: "route metadata names no policy route", args: []string{"check-envoy", cases["route_metadata_unknown.yaml"]}, wantCode: 1,
			wantStdout: []string{`routes[0].metadata.filter_metadata["idemgate"].route: error: names policy route "paymnts"`, `warning: policy routes[0] "payments": POST: no route of the route_config sends requests to it`},
		},
		{
			name: "route_name names no route", args: []string{"check-envoy", cases["route_name_unknown.yaml"]}, wantCode: 1,
			wantStdout: []string{`error: routes[1].match.route_name "orders-create" names no route`},
		},
		{name: "unrouted policy route: a warning", args: []string{"check-envoy", cases["unrouted_path.yaml"]}, wantStdout: []string{"warning: policy routes[2]: POST /payments: no route of the route_config sends requests to it"}},
		{name: "routes by name and metadata", args: []string{"check-envoy", envoyRoutes}, wantStdout: []string{envoyRoutes + ": ok\n"}},
		{name: "warning only", args: []string{"check-envoy", idleLong}, wantStdout: []string{idleLong + ": static_resources.clusters[1]: warning: the idle_timeout"}},
		{
			name: "schema error", args: []string{"check-envoy", cases["schema_unknown_field.yaml"]}, wantCode: 1,
			wantStdout: []string{`error: schema: unknown field "per_connection_buffer_limit_byte"`},
		},
		{name: "stdin", args: []string{"check-envoy", "-"}, stdin: mustRead(t, envoyYAML), wantStdout: []string{"-: ok\n"}},
		{name: "not YAML", args: []string{"check-envoy", "-"}, stdin: "a: [1\n", wantCode: 2, wantStdout: []string{"-: error: not YAML"}},
		{name: "a list, not a bootstrap", args: []string{"check-envoy", "-"}, stdin: "- 1\n", wantCode: 2, wantStdout: []string{"want a YAML mapping"}},
		{name: "missing file", args: []string{"check-envoy", envoyYAML, "testdata/missing.yaml"}, wantCode: 2, wantStderr: []string{"testdata/missing.yaml", "no such file"}},
		{name: "directory", args: []string{"check-envoy", "testdata"}, wantCode: 2, wantStderr: []string{"testdata: is a directory"}},
		{name: "no file", args: []string{"check-envoy"}, wantCode: 2, wantStderr: []string{"expected at least one FILE", "usage: idemctl check-envoy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := invoke(t, tt.stdin, tt.args...)
			if got.code != tt.wantCode {
				t.Errorf("exit status = %d, want %d (stdout %q, stderr %q)", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(got.stdout, s) {
					t.Errorf("stdout = %q, want it to contain %q", got.stdout, s)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(got.stderr, s) {
					t.Errorf("stderr = %q, want it to contain %q", got.stderr, s)
				}
			}
			if tt.wantStderr == nil && got.stderr != "" {
				t.Errorf("stderr = %q, want empty: findings go to stdout", got.stderr)
			}
		})
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	return readFixture(t, "../"+name) // readFixture reads under testdata/
}

// checkEnvoyJSON is the --json shape of check-envoy.
type checkEnvoyJSON struct {
	OK    *bool `json:"ok"`
	Files []struct {
		File     string `json:"file"`
		Findings []struct {
			Severity, Rule, Path, Message string
		} `json:"findings"`
	} `json:"files"`
	Error *struct{ Code, Message string } `json:"error"`
}

func TestCheckEnvoyJSON(t *testing.T) {
	cases := envoyCases(t, "retry_route.yaml", "idle_timeout_long.yaml")
	retryRoute, idleLong := cases["retry_route.yaml"], cases["idle_timeout_long.yaml"]
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantOK    bool
		wantRules [][]string // per file
		wantErr   string     // error code, for the failure object
	}{
		{name: "clean", args: []string{envoyYAML}, wantOK: true, wantRules: [][]string{{}}},
		{name: "findings", args: []string{retryRoute, idleLong}, wantCode: 1, wantRules: [][]string{{"retry"}, {"idle_timeout"}}},
		{name: "warning only", args: []string{idleLong}, wantOK: true, wantRules: [][]string{{"idle_timeout"}}},
		{name: "unreadable", args: []string{"testdata/missing.yaml"}, wantCode: 2, wantErr: "io"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := invoke(t, "", append([]string{"check-envoy", "--json"}, tt.args...)...)
			if got.code != tt.wantCode || got.stderr != "" {
				t.Errorf("exit %d, stderr %q; want %d and nothing", got.code, got.stderr, tt.wantCode)
			}
			var out checkEnvoyJSON
			dec := json.NewDecoder(strings.NewReader(got.stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&out); err != nil {
				t.Fatalf("stdout %q: %v", got.stdout, err)
			}
			if tt.wantErr != "" {
				if out.Error == nil || out.Error.Code != tt.wantErr {
					t.Errorf("error = %+v, want code %q", out.Error, tt.wantErr)
				}
				return
			}
			if out.OK == nil || *out.OK != tt.wantOK {
				t.Errorf("ok = %v, want %v", out.OK, tt.wantOK)
			}
			if len(out.Files) != len(tt.wantRules) {
				t.Fatalf("%d files, want %d", len(out.Files), len(tt.wantRules))
			}
			for i, f := range out.Files {
				if f.File != tt.args[i] || f.Findings == nil {
					t.Errorf("files[%d] = %+v; want file %s and a findings array", i, f, tt.args[i])
				}
				var rules []string
				for _, x := range f.Findings {
					rules = append(rules, x.Rule)
					if x.Severity == "" || x.Path == "" || x.Message == "" {
						t.Errorf("finding %+v lacks a member", x)
					}
				}
				if strings.Join(rules, ",") != strings.Join(tt.wantRules[i], ",") {
					t.Errorf("files[%d] rules = %v, want %v", i, rules, tt.wantRules[i])
				}
			}
		})
	}
}
