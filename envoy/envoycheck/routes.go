package envoycheck

import (
	"slices"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/idemgate/idemgate/plugin/policy"
)

// envoyRoute is an Envoy route the idemgate filter sees: it forwards
// upstream and does not turn the filter off.
type envoyRoute struct {
	r    *routev3.Route
	path string // routes[j] of its virtual host, as written
	j    int
	// policyRoute is what its metadata.filter_metadata.idemgate.route
	// says; set is false without one.
	policyRoute string
	set         bool
}

// filteredRoutes lists the routes of rc that the filter named filterName
// sees and that go upstream.
func filteredRoutes(rc *routev3.RouteConfiguration, rp, filterName string) []envoyRoute {
	var out []envoyRoute
	for i, vh := range rc.GetVirtualHosts() {
		vp := index(field(rp, "virtual_hosts"), i)
		for j, r := range vh.GetRoutes() {
			if r.GetRoute() == nil || filterDisabled(r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), filterName) {
				continue
			}
			out = append(out, newEnvoyRoute(r, index(field(vp, "routes"), j), j))
		}
	}
	return out
}

func newEnvoyRoute(r *routev3.Route, path string, j int) envoyRoute {
	er := envoyRoute{r: r, path: path, j: j}
	if v, ok := r.GetMetadata().GetFilterMetadata()[policy.MetadataNamespace].GetFields()[policy.MetadataField]; ok {
		er.set = true
		if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			er.policyRoute = s.StringValue
		}
	}
	return er
}

// metadataPath locates a route's metadata value in findings.
func (er *envoyRoute) metadataPath() string {
	return key(field(field(er.path, "metadata"), "filter_metadata"), policy.MetadataNamespace) + "." + policy.MetadataField
}

// governingRouteOf returns the policy route that governs requests the
// Envoy route routes, as the filter's policy.Select picks it: the one its
// metadata names, else one whose match.route_name is its name, else one
// whose own match overlaps it (governingRoute); -1 when none can. Methods
// are weighed where the route restricts them.
func governingRouteOf(er *envoyRoute, cfg *policy.Config) int {
	methods := envoyMethods(er.r.GetMatch().GetHeaders())
	admits := func(pr *policy.Route) bool {
		return methods == nil || slices.ContainsFunc(pr.Match.Methods, func(x string) bool { return slices.Contains(methods, x) })
	}
	if er.set {
		for i := range cfg.Routes {
			if pr := &cfg.Routes[i]; pr.Name == er.policyRoute && er.policyRoute != "" {
				if admits(pr) {
					return i
				}
				return -1
			}
		}
		return -1 // an unknown name: the filter refuses, checkRouteSelection flags it
	}
	if name := er.r.GetName(); name != "" {
		for i := range cfg.Routes {
			pr := &cfg.Routes[i]
			if pr.Match.RouteName != name || !admits(pr) {
				continue
			}
			if pr.Match.Path == "" && pr.Match.Prefix == "" && pr.Match.Glob == "" || pathOverlaps(er.r.GetMatch(), pr) {
				return i
			}
		}
	}
	return governingRoute(er.r.GetMatch(), cfg)
}

// checkRouteSelection flags what Envoy's routes and the policy say of
// each other: route metadata naming no policy route (the filter answers
// each of its requests 500) or holding no string; a match.route_name no
// route of the route_config has (the traffic it meant is not governed
// by it); and a policy route no Envoy route ever sends requests to.
func checkRouteSelection(routes []envoyRoute, cfg *policy.Config, cp string, out *findings) {
	reached := make([]bool, len(cfg.Routes))
	names := map[string]bool{}
	for i := range routes {
		er := &routes[i]
		names[er.r.GetName()] = true
		if er.set {
			switch {
			case er.policyRoute == "":
				out.add(Error, RuleRouteMetadata, er.metadataPath(), "must be a non-empty string naming a policy route; the filter would refuse every request of routes[%d] with 500", er.j)
			case cfg.Named(er.policyRoute) == nil:
				out.add(Error, RuleRouteMetadata, er.metadataPath(), "names policy route %q, which the idemgate policy does not have (its named routes: %s): the filter would refuse every request of routes[%d] with 500; name a policy route with \"name\"", er.policyRoute, namedRoutes(cfg), er.j)
			}
		}
		for k := range cfg.Routes {
			if reaches(er, &cfg.Routes[k]) {
				reached[k] = true
			}
		}
	}
	for k := range cfg.Routes {
		pr := &cfg.Routes[k]
		p := field(cp, "configuration")
		switch {
		case pr.Match.RouteName != "" && !names[pr.Match.RouteName]:
			out.add(Error, RuleRouteName, p, "routes[%d].match.route_name %q names no route of the route_config that goes upstream through this filter: the requests it was meant for are not governed by it (route names: %s)", k, pr.Match.RouteName, routeNames(routes))
		case !reached[k]:
			out.add(Warning, RuleUnrouted, p, "%s: no route of the route_config sends requests to it (%s), so it governs nothing", describe(pr, k), unreachedWhy(pr))
		}
	}
}

// reaches reports whether some request the Envoy route routes may be
// governed by the policy route.
func reaches(er *envoyRoute, pr *policy.Route) bool {
	methods := envoyMethods(er.r.GetMatch().GetHeaders())
	if methods != nil && !slices.ContainsFunc(pr.Match.Methods, func(x string) bool { return slices.Contains(methods, x) }) {
		return false
	}
	switch {
	case er.set:
		return pr.Name != "" && pr.Name == er.policyRoute
	case pr.Match.RouteName != "":
		return pr.Match.RouteName == er.r.GetName() &&
			(pr.Match.Path == "" && pr.Match.Prefix == "" && pr.Match.Glob == "" || pathOverlaps(er.r.GetMatch(), pr))
	case pr.Match.SelectsByPath():
		return pathOverlaps(er.r.GetMatch(), pr)
	}
	return false
}

func unreachedWhy(pr *policy.Route) string {
	if pr.Match.SelectsByPath() {
		return "no route whose match overlaps its path and methods and carries no idemgate metadata"
	}
	return "no route's metadata.filter_metadata." + policy.MetadataNamespace + "." + policy.MetadataField + " names " + quote(pr.Name)
}

func namedRoutes(cfg *policy.Config) string {
	var ns []string
	for i := range cfg.Routes {
		if n := cfg.Routes[i].Name; n != "" {
			ns = append(ns, quote(n))
		}
	}
	return list0(ns)
}

func routeNames(routes []envoyRoute) string {
	var ns []string
	for i := range routes {
		if n := routes[i].r.GetName(); n != "" && !slices.Contains(ns, quote(n)) {
			ns = append(ns, quote(n))
		}
	}
	return list0(ns)
}

func list0(ns []string) string {
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, ", ")
}

func quote(s string) string { return strconv.Quote(s) }
