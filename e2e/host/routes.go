package host

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Route is one route of the host's route table, a small stand-in for
// Envoy's route_config: requests whose path (without the query) starts
// with Prefix are routed by the first such route, in order, and the
// module learns its name (xds.route_name) and its metadata
// (xds.route_metadata). Every route goes to the one upstream.
type Route struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix"`
	// Metadata is the route's metadata.filter_metadata: namespace →
	// a google.protobuf.Struct, as JSON decodes into Go (string, float64,
	// bool, nil, map[string]any, []any).
	Metadata map[string]map[string]any `json:"metadata"`
}

func checkRoutes(routes []Route) error {
	for i, r := range routes {
		if !strings.HasPrefix(r.Prefix, "/") {
			return fmt.Errorf("host: routes[%d]: prefix %q must start with '/'", i, r.Prefix)
		}
	}
	return nil
}

// route returns the route of a request path, or nil.
func (h *Host) route(target string) *Route {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	for i := range h.cfg.Routes {
		if r := &h.cfg.Routes[i]; strings.HasPrefix(target, r.Prefix) {
			return r
		}
	}
	return nil
}

// routeProperty answers the xds.route_name and xds.route_metadata
// properties of a stream routed by r (nil: no route). handled is false for
// other properties. Envoy walks a path below route_metadata itself:
// filter_metadata, then the namespace's Struct, then its fields; a string
// is its bytes, a number an 8-byte little-endian double, a bool one byte,
// a Struct or list the proxy-wasm pairs of its entries (as Envoy's
// serializeValue). The whole Metadata message (the path
// xds.route_metadata alone) is not provided.
func routeProperty(r *Route, path []string) (v []byte, found, handled bool) {
	if len(path) < 2 || path[0] != "xds" || (path[1] != "route_name" && path[1] != "route_metadata") {
		return nil, false, false
	}
	if r == nil {
		return nil, false, true
	}
	if path[1] == "route_name" {
		return []byte(r.Name), len(path) == 2, true
	}
	if len(path) < 4 || path[2] != "filter_metadata" {
		return nil, false, true
	}
	ns, ok := r.Metadata[path[3]]
	if !ok {
		return nil, false, true
	}
	var cur any = ns
	for _, k := range path[4:] {
		switch m := cur.(type) {
		case map[string]any:
			if cur, ok = m[k]; !ok {
				return nil, false, true
			}
		default:
			return nil, false, true
		}
	}
	v, found = serializeValue(cur)
	return v, found, true
}

// serializeValue is Envoy's serialization of a property value.
func serializeValue(v any) ([]byte, bool) {
	switch x := v.(type) {
	case string:
		return []byte(x), true
	case float64:
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(x)), true
	case int:
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(float64(x))), true
	case bool:
		if x {
			return []byte{1}, true
		}
		return []byte{0}, true
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pairs := make([][2]string, 0, len(keys))
		for _, k := range keys {
			b, ok := serializeValue(x[k])
			if !ok {
				return nil, false
			}
			pairs = append(pairs, [2]string{k, string(b)})
		}
		return serializeMap(pairs), true
	case []any:
		pairs := make([][2]string, 0, len(x))
		for _, e := range x {
			b, ok := serializeValue(e)
			if !ok {
				return nil, false
			}
			pairs = append(pairs, [2]string{string(b), ""})
		}
		return serializeMap(pairs), true
	}
	return nil, false // null: Envoy fails to serialize it
}
