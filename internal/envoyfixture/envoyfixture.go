// Package envoyfixture builds the Envoy bootstraps that envoycheck's tests
// check, each from one base bootstrap and a small patch, so that a case
// shows only what it changes.
//
// A fixture directory holds base.yaml, an Envoy bootstrap Check finds
// clean, and cases/NAME.yaml, one file a case:
//
//	# What the case changes, and why Check must (or must not) object.
//	from: other.yaml  # optional: start from another case, not base.yaml
//	policy:           # optional: JSON Patch on the idemgate policy
//	- {op: replace, path: /routes/0/max_body_bytes, value: 0}
//	patch:            # optional: JSON Patch on the bootstrap
//	- {op: replace, path: /static_resources/clusters/0/type, value: STATICC}
//
// Patches are JSON Patch (RFC 6902), not JSON Merge Patch (RFC 7386): what
// a case breaks sits inside lists (listeners, http_filters, routes,
// clusters), which a merge patch can only replace whole, and a JSON Patch
// fails when the place it names is missing, so a change to base.yaml that
// moves what a case breaks fails that case instead of silently breaking
// nothing.
//
// The policy is JSON inside a string (the idemgate wasm filter's
// configuration value), where a patch on the bootstrap cannot reach; the
// policy patch applies to that JSON, before the bootstrap patch.
package envoyfixture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"sigs.k8s.io/yaml"
)

// BaseFile is the base bootstrap's name in a fixture directory.
const BaseFile = "base.yaml"

// CasesDir is the directory of the cases in a fixture directory.
const CasesDir = "cases"

const wasmType = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"

// patchFile is one case file.
type patchFile struct {
	From   string          `json:"from,omitempty"`
	Policy json.RawMessage `json:"policy,omitempty"`
	Patch  json.RawMessage `json:"patch,omitempty"`
}

// Names lists the cases of the fixture directory dir, sorted: the file
// names under dir/cases, as Build takes them.
func Names(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, CasesDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names, nil
}

// Build returns case name (a file name under dir/cases) of the fixture
// directory dir as an Envoy bootstrap in YAML.
func Build(dir, name string) ([]byte, error) {
	js, err := build(dir, name, nil)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(js)
}

// build returns case name as JSON; chain holds the cases built from it.
func build(dir, name string, chain []string) ([]byte, error) {
	if slices.Contains(chain, name) {
		return nil, fmt.Errorf("cases built from each other: %s", strings.Join(append(chain, name), " from "))
	}
	if name != filepath.Base(name) || !strings.HasSuffix(name, ".yaml") {
		return nil, fmt.Errorf("case %q: want a file name under %s/ ending in .yaml", name, CasesDir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, CasesDir, name))
	if err != nil {
		return nil, err
	}
	var pf patchFile
	if err := yaml.UnmarshalStrict(raw, &pf); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if pf.Policy == nil && pf.Patch == nil {
		return nil, fmt.Errorf("%s: changes nothing: want policy or patch", name)
	}
	var doc []byte
	if pf.From == "" {
		base, err := os.ReadFile(filepath.Join(dir, BaseFile))
		if err != nil {
			return nil, err
		}
		if doc, err = yaml.YAMLToJSON(base); err != nil {
			return nil, fmt.Errorf("%s: %w", BaseFile, err)
		}
	} else if doc, err = build(dir, pf.From, append(chain, name)); err != nil {
		return nil, fmt.Errorf("%s: from: %w", name, err)
	}
	if pf.Policy != nil {
		if doc, err = patchPolicy(doc, pf.Policy); err != nil {
			return nil, fmt.Errorf("%s: policy: %w", name, err)
		}
	}
	if pf.Patch != nil {
		if doc, err = apply(doc, pf.Patch); err != nil {
			return nil, fmt.Errorf("%s: patch: %w", name, err)
		}
	}
	return doc, nil
}

// apply applies the JSON Patch ops to the JSON document doc. Ops that
// leave it as it was are an error: a case that changes nothing would pass
// for a clean case while testing none.
func apply(doc, ops []byte) ([]byte, error) {
	p, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, errors.New("no operations")
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, err
	}
	if jsonpatch.Equal(doc, out) {
		return nil, errors.New("changes nothing")
	}
	return out, nil
}

// patchPolicy applies the JSON Patch ops to the idemgate policy inside the
// bootstrap doc (JSON) and returns the bootstrap with the patched policy.
func patchPolicy(doc, ops []byte) ([]byte, error) {
	var root any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber() // numbers pass through as written
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	var found []map[string]any
	findPolicy(root, &found)
	if len(found) != 1 {
		return nil, fmt.Errorf("want one idemgate wasm filter with a string configuration value, found %d", len(found))
	}
	conf := found[0]
	patched, err := apply([]byte(conf["value"].(string)), ops)
	if err != nil {
		return nil, err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, patched, "", "  "); err != nil {
		return nil, err
	}
	pretty.WriteByte('\n')
	conf["value"] = pretty.String()
	return json.Marshal(root)
}

// findPolicy collects the configuration of every wasm filter named
// idemgate whose configuration value is a string: where the policy is.
func findPolicy(v any, found *[]map[string]any) {
	switch v := v.(type) {
	case map[string]any:
		if v["@type"] == wasmType {
			if cfg, ok := v["config"].(map[string]any); ok && cfg["name"] == "idemgate" {
				if conf, ok := cfg["configuration"].(map[string]any); ok {
					if _, ok := conf["value"].(string); ok {
						*found = append(*found, conf)
					}
				}
			}
		}
		for _, x := range v {
			findPolicy(x, found)
		}
	case []any:
		for _, x := range v {
			findPolicy(x, found)
		}
	}
}
