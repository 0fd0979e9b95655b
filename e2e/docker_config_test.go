package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v2"

	"github.com/idemgate/idemgate/e2e/host"
	"github.com/idemgate/idemgate/envoy/envoycheck"
	"github.com/idemgate/idemgate/images"
)

// TestDockerStackMatchesLocal: the Compose stack (which cannot run on our
// build machines) must be the same system as the local one the suite runs
// here: the services the docker target's faults name, the ports the suite
// addresses, the module built by make, the same plugin configuration, and
// a Redis that keeps completed keys across a restart.
func TestDockerStackMatchesLocal(t *testing.T) {
	project := loadCompose(t, "docker-compose.yml")
	if project.Name != "idemgate-e2e" {
		t.Errorf("project name %q, want idemgate-e2e", project.Name)
	}
	for _, name := range []string{"envoy", "controlplane", "redis", "upstream"} {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %q missing: the docker target's faults name it", name)
		}
	}
	for name, s := range project.Services {
		if s.Build != nil {
			// The loader made the context absolute.
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		for _, p := range s.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes %s:%d beyond loopback (host_ip %q)", name, p.Published, p.Target, p.HostIP)
			}
		}
	}
	wantPorts := map[string]string{"envoy": "127.0.0.1:8080:8080", "upstream": "127.0.0.1:9000:9000", "controlplane": "127.0.0.1:8081:8081"}
	for name, want := range wantPorts {
		var got []string
		for _, p := range project.Services[name].Ports {
			got = append(got, fmt.Sprintf("%s:%s:%d", p.HostIP, p.Published, p.Target))
		}
		if !contains(got, want) {
			t.Errorf("service %s ports %v, want %s (the suite's default addresses)", name, got, want)
		}
	}
	envoy := project.Services["envoy"]
	var mounts []string
	for _, v := range envoy.Volumes {
		rel, err := filepath.Rel(project.WorkingDir, v.Source)
		if err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, fmt.Sprintf("%s:%s:%v", filepath.ToSlash(rel), v.Target, v.ReadOnly))
	}
	if !contains(mounts, "../build/idempotency.wasm:/etc/idemgate/idempotency.wasm:true") ||
		!contains(mounts, "envoy-docker.yaml:/etc/envoy/envoy.yaml:true") {
		t.Errorf("envoy volumes %v: want the module from build/ and envoy-docker.yaml, read-only", mounts)
	}
	if !contains(project.Services["redis"].Command, "--appendonly") || !contains(project.Services["redis"].Command, "noeviction") {
		t.Errorf("redis command %v: want an append-only file and noeviction", project.Services["redis"].Command)
	}
	if u := project.Services["controlplane"].Environment["IDEM_REDIS_URL"]; u == nil || *u != "redis://redis:6379" {
		t.Errorf("controlplane IDEM_REDIS_URL %v, want redis://redis:6379", u)
	}
	if _, ok := project.Services["controlplane"].DependsOn["redis"]; !ok {
		t.Error("controlplane does not depend on redis")
	}

	// The plugin configuration inlined in envoy-docker.yaml is the e2e policy.
	var bootstrap any
	raw, err := os.ReadFile("envoy-docker.yaml")
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

// loadCompose loads compose files with compose-go, the loader Docker
// Compose itself runs: the Compose schema (unknown or misspelt keys
// fail), interpolation, !reset, and its consistency checks (depends_on
// naming a service that does not exist fails). The environment is empty
// so that the defaults in the files are what is checked.
func loadCompose(t *testing.T, files ...string) *types.Project {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []types.ConfigFile
	for _, f := range files {
		cfgs = append(cfgs, types.ConfigFile{Filename: filepath.Join(wd, f)})
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: cfgs,
		Environment: types.Mapping{},
	})
	if err != nil {
		t.Fatalf("compose %v: %v", files, err)
	}
	return project
}

// TestComposeOnMakeImage: the override file runs the control plane from
// the image make image builds (tagged as its tarball is), never building
// or pulling it, and leaves the rest of the stack as it is.
func TestComposeOnMakeImage(t *testing.T) {
	base := loadCompose(t, "docker-compose.yml")
	project := loadCompose(t, "docker-compose.yml", "docker-compose.images.yml")
	cp := project.Services["controlplane"]
	want := images.ControlPlaneRepo + ":dev"
	if cp.Image != want || cp.Build != nil || cp.PullPolicy != types.PullPolicyNever {
		t.Errorf("controlplane: image %q build %v pull_policy %q; want %s, no build, never pulled", cp.Image, cp.Build, cp.PullPolicy, want)
	}
	if !reflect.DeepEqual(cp.Environment, base.Services["controlplane"].Environment) || !reflect.DeepEqual(cp.Ports, base.Services["controlplane"].Ports) {
		t.Error("the override changed the control plane's environment or ports")
	}
	for name, s := range base.Services {
		if name != "controlplane" && !reflect.DeepEqual(project.Services[name], s) {
			t.Errorf("the override changed service %s", name)
		}
	}
}

// A compose file with a misspelt key is refused by the same loader: the
// checks above are not vacuous.
func TestComposeLoaderIsStrict(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("services:\n  a:\n    image: x\n    dependson: [b]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir: filepath.Dir(bad), ConfigFiles: []types.ConfigFile{{Filename: bad}}, Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("bad", true) })
	if err == nil || !strings.Contains(err.Error(), "dependson") {
		t.Errorf("loading a misspelt key: %v, want an error naming it", err)
	}
}
