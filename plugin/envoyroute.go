package main

import (
	"errors"

	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// The properties through which Envoy tells the filter which of its routes
// routed the request (Envoy's attributes, "xds.*"). Envoy walks the path
// itself, as it does for the scope's dynamic metadata: through the route's
// envoy.config.core.v3.Metadata into the Struct under filter_metadata, so
// the value arrives as the string's bytes and the module decodes no
// protobuf.
var (
	routeNameProperty     = []string{"xds", "route_name"}
	routeMetadataProperty = []string{"xds", "route_metadata", "filter_metadata", policy.MetadataNamespace, policy.MetadataField}
)

// selectRoute picks the policy route that governs a request (policy.Select):
// Envoy's route metadata first, then its route name, then the policy's own
// match. It reads each property only when some policy route can use it. A
// metadata naming no policy route is a configuration mistake: it is logged,
// counted in idemgate.route_unknown, and the request is refused with 500 —
// forwarded ungoverned only when every policy
// route is fail-open, since any fail-closed route might be the one meant.
// ok is false when the filter answered or let the request go.
func (c *httpContext) selectRoute(cfg *policy.Config, host, target, method string) (r *policy.Route, action types.Action, ok bool) {
	req := policy.Request{Host: host, Path: target, Method: method}
	if cfg.UsesRouteMetadata() {
		if v, err := proxywasm.GetProperty(routeMetadataProperty); err == nil {
			req.PolicyRoute = string(v)
		}
	}
	if cfg.UsesRouteNames() {
		if v, err := proxywasm.GetProperty(routeNameProperty); err == nil {
			req.RouteName = string(v)
		}
	}
	r, err := cfg.Select(req)
	if errors.Is(err, policy.ErrUnknownPolicyRoute) {
		c.plugin.stats.routeUnknown.Increment(1)
		proxywasm.LogErrorf("idempotency filter: %s %s: %v; set the Envoy route's metadata.filter_metadata.%s.%s to a policy route's name",
			method, req.Path, err, policy.MetadataNamespace, policy.MetadataField)
		if cfg.AllFailOpen() {
			return nil, types.ActionContinue, false
		}
		return nil, c.answer(probRouteUnknown, "the gateway's route names an idempotency policy route that does not exist; the request was not forwarded", 0), false
	}
	return r, types.ActionContinue, true
}
