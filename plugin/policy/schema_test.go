package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("schema.json: %v", err)
	}
	if got := s["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", got)
	}
	return s
}

// resolve follows a local "$ref" ("#/$defs/name").
func resolve(t *testing.T, root, node map[string]any) map[string]any {
	t.Helper()
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			t.Fatalf("unsupported $ref %q", ref)
		}
		def, ok := root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			t.Fatalf("$ref %q: no such definition", ref)
		}
		node = def
	}
}

func jsonTags(t reflect.Type) []string {
	var tags []string
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		tags = append(tags, tag)
	}
	slices.Sort(tags)
	return tags
}

// TestSchemaMatchesParser walks schema.json alongside the Go types Parse
// decodes into: every object in the schema has exactly the properties the
// parser knows, and forbids others, as Parse does.
func TestSchemaMatchesParser(t *testing.T) {
	root := loadSchema(t)
	var walk func(path string, node map[string]any, typ reflect.Type)
	walk = func(path string, node map[string]any, typ reflect.Type) {
		node = resolve(t, root, node)
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch typ.Kind() {
		case reflect.Slice:
			if node["type"] != "array" {
				t.Errorf("%s: schema type %v, Go %v", path, node["type"], typ)
				return
			}
			items, _ := node["items"].(map[string]any)
			if items == nil {
				t.Errorf("%s: no items", path)
				return
			}
			walk(path+"[]", items, typ.Elem())
		case reflect.Struct:
			if node["type"] != "object" || node["additionalProperties"] != false {
				t.Errorf("%s: want an object schema with additionalProperties false", path)
			}
			props, _ := node["properties"].(map[string]any)
			var names []string
			for n := range props {
				names = append(names, n)
			}
			slices.Sort(names)
			if want := jsonTags(typ); !slices.Equal(names, want) {
				t.Errorf("%s: schema properties %q\nGo json tags %q", path, names, want)
			}
			for n, p := range props {
				if f, ok := fieldByTag(typ, n); ok {
					walk(join(path, n), p.(map[string]any), f.Type)
				}
			}
		default:
			want := map[reflect.Kind]string{reflect.String: "string", reflect.Bool: "boolean", reflect.Int64: "integer", reflect.Int: "integer"}[typ.Kind()]
			got, _ := node["type"].(string)
			if got == "" && node["enum"] != nil {
				got = "string"
			}
			if got != want {
				t.Errorf("%s: schema type %q, Go %v", path, got, typ)
			}
		}
	}
	walk("(root)", root, reflect.TypeFor[rawConfig]())
}

// TestSchemaDefaults: writing a route property's schema default explicitly
// gives the route Parse builds when it is left out.
func TestSchemaDefaults(t *testing.T) {
	root := loadSchema(t)
	base, err := Parse([]byte(withRoute(`"ttl": "24h"`)))
	if err != nil {
		t.Fatal(err)
	}
	props := resolve(t, root, root["$defs"].(map[string]any)["route"].(map[string]any))["properties"].(map[string]any)
	n := 0
	for name, p := range props {
		def, ok := resolve(t, root, p.(map[string]any))["default"]
		if d, ok2 := p.(map[string]any)["default"]; ok2 {
			def, ok = d, true
		}
		// wait_timeout needs on_in_progress: wait, attempt_header
		// on_indeterminate: reconcile (checked below).
		if !ok || name == "wait_timeout" || name == "attempt_header" {
			continue
		}
		n++
		b, _ := json.Marshal(def)
		c, err := Parse([]byte(withRoute(`"` + name + `": ` + string(b))))
		if err != nil {
			t.Errorf("%s: default %s: %v", name, b, err)
			continue
		}
		if !reflect.DeepEqual(c.Routes[0], base.Routes[0]) {
			t.Errorf("%s: default %s in the schema differs from the parser's", name, b)
		}
	}
	if n < 10 {
		t.Errorf("only %d route defaults in the schema", n)
	}
	wait, err := Parse([]byte(withRoute(`"on_in_progress": "wait", "wait_timeout": "5s"`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait.Routes[0].WaitTimeout; got != DefaultWaitTimeout {
		t.Errorf("wait_timeout default %v, want %v", got, DefaultWaitTimeout)
	}
	rcBase, err := Parse([]byte(withRoute(`"on_indeterminate": "reconcile"`)))
	if err != nil {
		t.Fatal(err)
	}
	def := resolve(t, root, props["attempt_header"].(map[string]any))["default"]
	if d, ok := props["attempt_header"].(map[string]any)["default"]; ok {
		def = d
	}
	rc, err := Parse([]byte(withRoute(fmt.Sprintf(`"on_indeterminate": "reconcile", "attempt_header": %q`, def))))
	if err != nil || !reflect.DeepEqual(rc.Routes[0], rcBase.Routes[0]) {
		t.Errorf("attempt_header default %v in the schema differs from the parser's (%v)", def, err)
	}
	match, _ := Parse([]byte(`{"control_plane": {"cluster": "c", "authority": "a", "token": "t", "timeout": "500ms", "insecure_no_auth": false},
	  "routes": [{"match": {"path": "/p", "methods": ["POST", "PATCH"]}, "scope": {"headers": ["authorization"]}}]}`))
	if match == nil || !reflect.DeepEqual(match.Routes[0], base.Routes[0]) || match.ControlPlane != base.ControlPlane {
		t.Errorf("explicit control-plane and match defaults differ from the parser's")
	}
}

// TestExamples: every example configuration parses.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	if len(files) < 3 {
		t.Fatalf("found %d examples under testdata", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(b); err != nil {
				t.Error(err)
			}
		})
	}
}
