package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/idemgate/idemgate/e2e/host"
	"github.com/idemgate/idemgate/envoy/envoycheck"
	"go.yaml.in/yaml/v2"
)

// TestDockerStackMatchesLocal: the Compose stack (which cannot run on our
// build machines) must be the same system as the local one the suite runs
// here: the services the docker target's faults name, the ports the suite
// addresses, the module built by make, the same plugin configuration, and
// a Redis that keeps completed keys across a restart.
func TestDockerStackMatchesLocal(t *testing.T) {
	var compose struct {
		Name     string `yaml:"name"`
		Services map[string]struct {
			DependsOn []string          `yaml:"depends_on"`
			Image     string            `yaml:"image"`
			Command   []string          `yaml:"command"`
			Ports     []string          `yaml:"ports"`
			Volumes   []string          `yaml:"volumes"`
			Env       map[string]string `yaml:"environment"`
			Build     struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"envoy", "controlplane", "redis", "upstream"} {
		if _, ok := compose.Services[name]; !ok {
			t.Errorf("service %q missing: the docker target's faults name it", name)
		}
	}
	for name, s := range compose.Services {
		if s.Build.Dockerfile != "" {
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		for _, p := range s.Ports {
			if !bytes.HasPrefix([]byte(p), []byte("127.0.0.1:")) {
				t.Errorf("service %s publishes %q beyond loopback", name, p)
			}
		}
	}
	wantPorts := map[string]string{"envoy": "127.0.0.1:8080:8080", "upstream": "127.0.0.1:9000:9000"}
	for name, p := range wantPorts {
		if !contains(compose.Services[name].Ports, p) {
			t.Errorf("service %s ports %v, want %s (the suite's default addresses)", name, compose.Services[name].Ports, p)
		}
	}
	envoy := compose.Services["envoy"]
	if !contains(envoy.Volumes, "../build/idempotency.wasm:/etc/idemgate/idempotency.wasm:ro") ||
		!contains(envoy.Volumes, "./envoy-docker.yaml:/etc/envoy/envoy.yaml:ro") {
		t.Errorf("envoy volumes %v: want the module from build/ and envoy-docker.yaml", envoy.Volumes)
	}
	if !contains(compose.Services["redis"].Command, "--appendonly") || !contains(compose.Services["redis"].Command, "noeviction") {
		t.Errorf("redis command %v: want an append-only file and noeviction", compose.Services["redis"].Command)
	}

	// The plugin configuration inlined in envoy-docker.yaml is the e2e policy.
	var bootstrap any
	raw, err = os.ReadFile("envoy-docker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &bootstrap); err != nil {
		t.Fatalf("envoy-docker.yaml: %v", err)
	}
	inline, ok := dig(bootstrap, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config",
		"http_filters", 0, "typed_config", "config", "configuration", "value").(string)
	if !ok {
		t.Fatal("envoy-docker.yaml: no wasm filter configuration where expected")
	}
	want, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, []byte(inline), want) {
		t.Errorf("envoy-docker.yaml's plugin configuration differs from %s:\n%s", policyFile, inline)
	}
	// Its routes are the local stack's route table.
	var table []host.Route
	if b, err := os.ReadFile(routesFile); err != nil || json.Unmarshal(b, &table) != nil {
		t.Fatalf("%s: %v", routesFile, err)
	}
	routes, _ := dig(bootstrap, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config",
		"route_config", "virtual_hosts", 0, "routes").([]any)
	if len(routes) != len(table) {
		t.Fatalf("envoy-docker.yaml has %d routes, %s %d", len(routes), routesFile, len(table))
	}
	for i, r := range table {
		var md any
		if r.Metadata != nil {
			b, _ := json.Marshal(r.Metadata)
			_ = json.Unmarshal(b, &md)
		}
		got := []any{dig(routes[i], "name"), dig(routes[i], "match", "prefix"), jsonOf(dig(routes[i], "metadata", "filter_metadata"))}
		want := []any{r.Name, r.Prefix, jsonOf(md)}
		for k := range got {
			if got[k] != want[k] {
				t.Errorf("envoy-docker.yaml routes[%d] = %v, want %s's %v", i, got, routesFile, want)
				break
			}
		}
	}
	// Envoy's own API types and idemctl check-envoy's rules accept it,
	// warnings included.
	for _, f := range envoycheck.Check(raw) {
		t.Errorf("envoy-docker.yaml: check-envoy: %s", f)
	}
}

// jsonOf writes a decoded YAML or JSON value as JSON, maps with string
// keys, so that the two decoders' results compare.
func jsonOf(v any) string {
	var norm func(any) any
	norm = func(v any) any {
		switch x := v.(type) {
		case map[any]any:
			m := map[string]any{}
			for k, e := range x {
				m[fmt.Sprint(k)] = norm(e)
			}
			return m
		case map[string]any:
			m := map[string]any{}
			for k, e := range x {
				m[k] = norm(e)
			}
			return m
		}
		return v
	}
	b, _ := json.Marshal(norm(v))
	return string(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dig walks maps by string keys and lists by int indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[any]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("inline policy: %v", err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
