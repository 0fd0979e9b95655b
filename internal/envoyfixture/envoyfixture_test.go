package envoyfixture

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// base is a bootstrap cut to what the builder looks at: the idemgate
// policy sits in the second http filter, as a string.
const base = `static_resources:
  listeners:
  - name: l
    per_connection_buffer_limit_bytes: 2097152
    filters:
    - name: first
    - name: envoy.filters.http.wasm
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
        config:
          name: idemgate
          configuration:
            "@type": type.googleapis.com/google.protobuf.StringValue
            value: |
              {"control_plane": {"cluster": "cp"}, "routes": [{"max_body_bytes": 9007199254740993}]}
`

const filters = "/static_resources/listeners/0/filters"

// fixtureDir writes base.yaml and the cases into a new directory.
func fixtureDir(t *testing.T, baseYAML string, cases map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, CasesDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, BaseFile), []byte(baseYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range cases {
		if err := os.WriteFile(filepath.Join(dir, CasesDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// get reads the value at a /-separated path of map keys and list indexes.
func get(t *testing.T, doc any, path string) any {
	t.Helper()
	for _, k := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		switch d := doc.(type) {
		case map[string]any:
			doc = d[k]
		case []any:
			var i int
			if err := json.Unmarshal([]byte(k), &i); err != nil || i >= len(d) {
				t.Fatalf("%s: no index %q", path, k)
			}
			doc = d[i]
		default:
			t.Fatalf("%s: %q in a %T", path, k, doc)
		}
	}
	return doc
}

func decode(t *testing.T, y []byte) any {
	t.Helper()
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestBuild(t *testing.T) {
	dir := fixtureDir(t, base, map[string]string{
		"limit.yaml": `# A comment, as every case has.
patch:
- {op: replace, path: /static_resources/listeners/0/per_connection_buffer_limit_bytes, value: 65536}
`,
		"policy.yaml": `policy:
- {op: replace, path: /control_plane/cluster, value: other}
- {op: add, path: /routes/0/ttl, value: 24h}
`,
		// Built from policy.yaml, with the wasm filter moved first: the
		// policy is found wherever the filter is.
		"chained.yaml": `from: policy.yaml
patch:
- {op: move, from: ` + filters + `/1, path: ` + filters + `/0}
policy:
- {op: remove, path: /routes/0/ttl}
`,
	})
	t.Run("bootstrap patch", func(t *testing.T) {
		out, err := Build(dir, "limit.yaml")
		if err != nil {
			t.Fatal(err)
		}
		doc := decode(t, out)
		if got := get(t, doc, "/static_resources/listeners/0/per_connection_buffer_limit_bytes"); got != float64(65536) {
			t.Errorf("limit = %v, want 65536", got)
		}
		// The policy, untouched, stays the very string of the base.
		want := `{"control_plane": {"cluster": "cp"}, "routes": [{"max_body_bytes": 9007199254740993}]}` + "\n"
		if got := get(t, doc, filters+"/1/typed_config/config/configuration/value"); got != want {
			t.Errorf("policy = %q, want %q", got, want)
		}
	})
	policyOf := func(t *testing.T, name, at string) map[string]any {
		out, err := Build(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := get(t, decode(t, out), at+"/typed_config/config/configuration/value").(string)
		if !ok {
			t.Fatalf("%s: the policy is not a string", name)
		}
		var p map[string]any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("%s: policy %q: %v", name, s, err)
		}
		return p
	}
	t.Run("policy patch", func(t *testing.T) {
		got := policyOf(t, "policy.yaml", filters+"/1")
		want := map[string]any{
			"control_plane": map[string]any{"cluster": "other"},
			// A number beyond float64's exact range passes through as written.
			"routes": []any{map[string]any{"max_body_bytes": json.Number("9007199254740993"), "ttl": "24h"}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("policy = %v, want %v", got, want)
		}
	})
	t.Run("from another case", func(t *testing.T) {
		got := policyOf(t, "chained.yaml", filters+"/0")
		want := map[string]any{
			"control_plane": map[string]any{"cluster": "other"},
			"routes":        []any{map[string]any{"max_body_bytes": json.Number("9007199254740993")}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("policy = %v, want %v", got, want)
		}
	})
}

func TestBuildErrors(t *testing.T) {
	noPolicy := "static_resources: {listeners: [{name: l}]}\n"
	tests := []struct {
		name  string
		base  string
		cases map[string]string
		build string
		want  string
	}{
		{"unknown member", base, map[string]string{"c.yaml": "pach: []\n"}, "c.yaml", `unknown field "pach"`},
		{"changes nothing", base, map[string]string{"c.yaml": "# only a comment\n"}, "c.yaml", "changes nothing"},
		{"no operations", base, map[string]string{"c.yaml": "patch: []\n"}, "c.yaml", "no operations"},
		{"not a patch", base, map[string]string{"c.yaml": "patch: {op: add}\n"}, "c.yaml", "c.yaml: patch:"},
		{"ops that change nothing", base, map[string]string{"c.yaml": "patch: [{op: add, path: /a, value: 1}, {op: remove, path: /a}]\n"}, "c.yaml", "c.yaml: patch: changes nothing"},
		{"policy ops that change nothing", base, map[string]string{"c.yaml": "policy: [{op: replace, path: /control_plane/cluster, value: cp}]\n"}, "c.yaml", "c.yaml: policy: changes nothing"},
		{"unknown op", base, map[string]string{"c.yaml": "patch: [{op: frob, path: /a}]\n"}, "c.yaml", "frob"},
		// RFC 6902: replace needs the member to exist; a base that lost it
		// must fail the case, not grow a new member.
		{"replace a missing member", base, map[string]string{"c.yaml": "patch: [{op: replace, path: /static_resources/nope, value: 1}]\n"}, "c.yaml", "missing"},
		{"remove a missing member", base, map[string]string{"c.yaml": "patch: [{op: remove, path: /admin}]\n"}, "c.yaml", "nonexistent"},
		{"failed test op", base, map[string]string{"c.yaml": "patch: [{op: test, path: /static_resources/listeners/0/name, value: m}]\n"}, "c.yaml", "test"},
		{"policy replace a missing member", base, map[string]string{"c.yaml": "policy: [{op: replace, path: /nope, value: 1}]\n"}, "c.yaml", "c.yaml: policy:"},
		{"no policy to patch", noPolicy, map[string]string{"c.yaml": "policy: [{op: remove, path: /routes}]\n"}, "c.yaml", "found 0"},
		{"missing case", base, nil, "absent.yaml", "no such file"},
		{"not a file name", base, nil, "../base.yaml", "want a file name"},
		{"not yaml by name", base, map[string]string{"c.json": "patch: []\n"}, "c.json", "ending in .yaml"},
		{"from a missing case", base, map[string]string{"c.yaml": "from: gone.yaml\npatch: [{op: remove, path: /admin}]\n"}, "c.yaml", "c.yaml: from: "},
		{"from a cycle", base, map[string]string{
			"a.yaml": "from: b.yaml\npatch: [{op: add, path: /a, value: 1}]\n",
			"b.yaml": "from: a.yaml\npatch: [{op: add, path: /b, value: 1}]\n",
		}, "a.yaml", "cases built from each other: a.yaml from b.yaml from a.yaml"},
		{"base not YAML", "a: [1\n", map[string]string{"c.yaml": "patch: [{op: add, path: /a, value: 1}]\n"}, "c.yaml", BaseFile},
		{"case not YAML", base, map[string]string{"c.yaml": "patch: [\n"}, "c.yaml", "c.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureDir(t, tt.base, tt.cases)
			out, err := Build(dir, tt.build)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build(%q) = %q, %v; want an error containing %q", tt.build, out, err, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	dir := fixtureDir(t, base, map[string]string{"b.yaml": "", "a.yaml": "", "notes.txt": ""})
	got, err := Names(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.yaml", "b.yaml"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
}
