package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Envoy route metadata that selects a policy route: an Envoy route with
//
//	metadata:
//	  filter_metadata:
//	    idemgate: { route: payments }
//
// is governed by the policy route named "payments", whatever its match
// says (only its methods still apply). The filter reads it as the property
// xds.route_metadata.filter_metadata.idemgate.route.
const (
	MetadataNamespace = "idemgate"
	MetadataField     = "route"
)

// MaxNameLength bounds a policy route's name and a match's route_name.
const MaxNameLength = 256

// ErrUnknownPolicyRoute is wrapped by Select when the Envoy route's
// metadata names a policy route the configuration does not have.
var ErrUnknownPolicyRoute = errors.New("the Envoy route's metadata names no policy route")

// Request is what Select knows of a request.
type Request struct {
	Host   string // :authority, any case, port ignored
	Path   string // :path, query and fragment ignored
	Method string // :method, exact
	// RouteName is the name of the Envoy route that routed the request
	// (the xds.route_name property); "" when it has none or it was not
	// read.
	RouteName string
	// PolicyRoute is the policy route the Envoy route's metadata names
	// (filter_metadata.idemgate.route); "" when it names none.
	PolicyRoute string
}

// Select returns the route that governs a request, or nil. The most
// specific say wins, so that Envoy's router, where it is asked, decides:
//
//  1. the Envoy route's metadata names a policy route: that route, if it
//     lists the method (nil otherwise: no other route is considered); a
//     name the configuration lacks is an error wrapping
//     ErrUnknownPolicyRoute;
//  2. the first route, in configuration order, whose match.route_name is
//     the Envoy route's name and whose host, path (when given) and methods
//     match;
//  3. the first route without route_name whose host, path and methods
//     match (Match).
func (c *Config) Select(req Request) (*Route, error) {
	if req.PolicyRoute != "" {
		r := c.Named(req.PolicyRoute)
		if r == nil {
			return nil, fmt.Errorf("%w: %q (the policy's route names: %s)", ErrUnknownPolicyRoute, req.PolicyRoute, c.names())
		}
		if !r.Match.hasMethod(req.Method) {
			return nil, nil
		}
		return r, nil
	}
	if req.RouteName != "" {
		host, target := normalizeHost(req.Host), pathOnly(req.Path)
		for i := range c.Routes {
			if r := &c.Routes[i]; r.Match.RouteName == req.RouteName && r.Match.matches(host, target, req.Method) {
				return r, nil
			}
		}
	}
	return c.Match(req.Host, req.Path, req.Method), nil
}

// Named returns the route with that name, or nil.
func (c *Config) Named(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// UsesRouteNames reports whether some route has a match.route_name: only
// then does the filter read xds.route_name.
func (c *Config) UsesRouteNames() bool {
	for i := range c.Routes {
		if c.Routes[i].Match.RouteName != "" {
			return true
		}
	}
	return false
}

// UsesRouteMetadata reports whether some route has a name, so that Envoy
// route metadata can select it: only then does the filter read
// xds.route_metadata.
func (c *Config) UsesRouteMetadata() bool {
	for i := range c.Routes {
		if c.Routes[i].Name != "" {
			return true
		}
	}
	return false
}

// AllFailOpen reports whether every route is failure_mode open. A request
// whose Envoy route names an unknown policy route is forwarded ungoverned
// only then: any fail-closed route might be the one meant.
func (c *Config) AllFailOpen() bool {
	for i := range c.Routes {
		if c.Routes[i].FailureMode != FailOpen {
			return false
		}
	}
	return true
}

func (c *Config) names() string {
	var ns []string
	for i := range c.Routes {
		if n := c.Routes[i].Name; n != "" {
			ns = append(ns, fmt.Sprintf("%q", n))
		}
	}
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, ", ")
}

// SelectsByPath reports whether the route's own host/path/method match
// selects requests (step 3 of Select): it names a path and no route_name.
func (m *RouteMatch) SelectsByPath() bool {
	return m.RouteName == "" && (m.Path != "" || m.Prefix != "" || m.Glob != "")
}

func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}

// buildSelection parses a route's name and match: a route needs a way to
// be selected — a path, prefix or glob, a route_name, or a name for Envoy
// route metadata to use (then match may be left out, or give only
// methods).
func (raw *rawRoute) buildSelection(path string) (string, RouteMatch, error) {
	var name string
	if raw.Name != nil {
		if err := checkName(*raw.Name); err != nil {
			return "", RouteMatch{}, wrapField(path+".name", err)
		}
		name = *raw.Name
	}
	if raw.Match == nil {
		if name == "" {
			return "", RouteMatch{}, fieldErr(path+".match", "required (only a route with a name, which Envoy route metadata selects, may leave it out)")
		}
		return name, RouteMatch{Methods: slices.Clone(DefaultMethods)}, nil
	}
	m, err := raw.Match.build(path + ".match")
	if err != nil {
		return "", m, err
	}
	if rn := raw.Match.RouteName; rn != nil {
		if err := checkName(*rn); err != nil {
			return "", m, wrapField(path+".match.route_name", err)
		}
		m.RouteName = *rn
	}
	if m.RouteName == "" && m.Path == "" && m.Prefix == "" && m.Glob == "" && name == "" {
		return "", m, fieldErr(path+".match", "want one of path, prefix, glob and route_name, got none (or give the route a name for Envoy route metadata to select it)")
	}
	return name, m, nil
}

// checkName checks a policy route name or an Envoy route name: visible
// ASCII, as both travel in logs and problem details.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("must not be empty")
	case len(n) > MaxNameLength:
		return fmt.Errorf("is %d bytes, at most %d", len(n), MaxNameLength)
	}
	return checkPrintable(n)
}

// checkRouteNames: a name selects one route.
func checkRouteNames(routes []Route) error {
	seen := map[string]int{}
	for i := range routes {
		n := routes[i].Name
		if n == "" {
			continue
		}
		if j, dup := seen[n]; dup {
			return fieldErr(fmt.Sprintf("routes[%d].name", i), "%q is also the name of routes[%d]; a name selects one route", n, j)
		}
		seen[n] = i
	}
	return nil
}
