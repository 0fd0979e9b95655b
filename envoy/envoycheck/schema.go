package envoycheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// decode turns YAML into a validated Bootstrap. It returns nil when the
// document cannot be decoded at all.
func decode(data []byte) (*bootstrapv3.Bootstrap, []Finding) {
	var out findings
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		out.add(Error, RuleYAML, "", "not YAML: %v", err)
		return nil, out
	}
	if !isObject(js) {
		out.add(Error, RuleYAML, "", "not an Envoy bootstrap: want a YAML mapping at the top level")
		return nil, out
	}
	// protojson would stop at the first unresolvable type URL with a terse
	// message; find them all first, each with its location.
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		out.add(Error, RuleYAML, "", "not YAML: %v", err)
		return nil, out
	}
	unknownTypes(doc, "", &out)
	if len(out) > 0 {
		return nil, out
	}
	bs := new(bootstrapv3.Bootstrap)
	// DiscardUnknown false: a misspelt field must fail, not vanish.
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, bs); err != nil {
		msg := protojsonMessage(err)
		out.add(Error, RuleSchema, locate(doc, msg), "schema: %s", msg)
		return nil, out
	}
	validate(bs, "", &out)
	walkAny(bs.ProtoReflect(), "", &out)
	return bs, out
}

func isObject(js []byte) bool {
	s := strings.TrimSpace(string(js))
	return strings.HasPrefix(s, "{")
}

// protojsonMessage drops the "proto: (line 1:NNN): " prefix: the line and
// column are those of the JSON converted from the YAML, which the user has
// never seen. The field or value named in the rest is what locates it.
func protojsonMessage(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "proto:")
	msg = strings.TrimSpace(msg)
	if strings.HasPrefix(msg, "(line ") {
		if i := strings.Index(msg, "):"); i >= 0 {
			msg = strings.TrimSpace(msg[i+2:])
		}
	}
	return msg
}

// locate finds where in the document a protojson error points, from the
// last quoted name or value in its message: the path of the first member
// with that name, else of the first string with that value. "" when the
// message quotes nothing or nothing matches.
func locate(doc any, msg string) string {
	q := quoted.FindAllStringSubmatch(msg, -1)
	if len(q) == 0 {
		return ""
	}
	want := q[len(q)-1][1]
	if p, ok := find(doc, "", func(k string, _ any) bool { return k == want }); ok {
		return p
	}
	p, _ := find(doc, "", func(_ string, v any) bool { s, ok := v.(string); return ok && s == want })
	return p
}

var quoted = regexp.MustCompile(`"([^"\\]*)"`)

// find walks the document in a stable order and returns the path of the
// first member for which match holds.
func find(v any, path string, match func(k string, v any) bool) (string, bool) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if match(k, v[k]) {
				return field(path, k), true
			}
		}
		for _, k := range keys {
			if p, ok := find(v[k], field(path, k), match); ok {
				return p, true
			}
		}
	case []any:
		for i, e := range v {
			if p, ok := find(e, index(path, i), match); ok {
				return p, true
			}
		}
	}
	return "", false
}

// unknownTypes reports every "@type" whose message is not registered: a
// typed config of an extension this checker does not know, or a typo.
func unknownTypes(v any, path string, out *findings) {
	switch v := v.(type) {
	case map[string]any:
		if t, ok := v["@type"].(string); ok {
			if _, err := protoregistry.GlobalTypes.FindMessageByURL(t); err != nil {
				out.add(Error, RuleUnknownType, field(path, "@type"), "unknown type URL %q: not an Envoy v3 API type this checker knows (a typo, a v2 type, or an extension not registered in envoy/envoycheck/types.go)", t)
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // findings in a stable order
		for _, k := range keys {
			unknownTypes(v[k], field(path, k), out)
		}
	case []any:
		for i, e := range v {
			unknownTypes(e, index(path, i), out)
		}
	}
}

// validator is what protoc-gen-validate generates for every Envoy message.
type validator interface{ ValidateAll() error }

// validate runs the generated validation of m and reports each violation.
// It does not descend into Any fields; walkAny does.
func validate(m proto.Message, path string, out *findings) {
	v, ok := m.(validator)
	if !ok {
		return
	}
	err := v.ValidateAll()
	if err == nil {
		return
	}
	var multi interface{ AllErrors() []error }
	if errors.As(err, &multi) {
		for _, e := range multi.AllErrors() {
			out.add(Error, RuleSchema, path, "invalid %s: %v", m.ProtoReflect().Descriptor().FullName(), e)
		}
		return
	}
	out.add(Error, RuleSchema, path, "invalid %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
}

// walkAny visits every set message field of m, recursively, and validates
// the message inside every google.protobuf.Any it meets (then walks that
// too: an HttpConnectionManager holds its http_filters' typed configs).
func walkAny(m protoreflect.Message, path string, out *findings) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := field(path, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visitMessage(l.Get(i).Message(), index(p, i), out)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			type entry struct {
				k string
				v protoreflect.Message
			}
			var es []entry
			v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				es = append(es, entry{k.String(), v.Message()})
				return true
			})
			sort.Slice(es, func(i, j int) bool { return es[i].k < es[j].k })
			for _, e := range es {
				visitMessage(e.v, key(p, e.k), out)
			}
		case fd.Message() != nil && !fd.IsMap():
			visitMessage(v.Message(), p, out)
		}
		return true
	})
}

func visitMessage(m protoreflect.Message, path string, out *findings) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		walkAny(m, path, out)
		return
	}
	inner, err := unpack(a)
	if err != nil {
		out.add(Error, RuleSchema, path, "%v", err)
		return
	}
	validate(inner, path, out)
	walkAny(inner.ProtoReflect(), path, out)
}

// unpack decodes an Any strictly: unknown fields inside fail too.
func unpack(a *anypb.Any) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return nil, fmt.Errorf("unknown type URL %q", a.GetTypeUrl())
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return nil, fmt.Errorf("typed config %q: %w", a.GetTypeUrl(), err)
	}
	return m, nil
}
