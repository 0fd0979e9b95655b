package envoycheck

import (
	"fmt"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	setmetadatav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_metadata/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/idemgate/idemgate/plugin/policy"
)

// Dynamic metadata namespaces that Envoy's filters write under their
// canonical names, whatever the http_filters entry is called.
const (
	jwtAuthnNamespace = "envoy.filters.http.jwt_authn"
	extAuthzNamespace = "envoy.filters.http.ext_authz"
	rbacNamespace     = "envoy.filters.http.rbac"
)

// writes says whether an HTTP filter writes dynamic metadata under ns:
// yes, no, or maybe (a filter that runs code, whose namespaces only its
// code knows).
type writes int

const (
	writesNo writes = iota
	writesMaybe
	writesYes
)

func filterWrites(hf *hcmv3.HttpFilter, ns string) writes {
	if hf.GetName() == ns {
		return writesYes // by convention a filter is named after its namespace
	}
	m, err := unpack(hf.GetTypedConfig())
	if err != nil {
		return writesMaybe
	}
	switch v := m.(type) {
	case *jwtv3.JwtAuthentication:
		return yesIf(ns == jwtAuthnNamespace)
	case *extauthzv3.ExtAuthz:
		return yesIf(ns == extAuthzNamespace)
	case *rbacv3.RBAC:
		return yesIf(ns == rbacNamespace)
	case *setmetadatav3.Config:
		//lint:ignore SA1019 Envoy still honours the deprecated metadata_namespace: a filter setting it writes there
		if v.GetMetadataNamespace() == ns {
			return writesYes
		}
		for _, md := range v.GetMetadata() {
			if md.GetMetadataNamespace() == ns {
				return writesYes
			}
		}
		return writesNo
	case *luav3.Lua, *wasmfilterv3.Wasm:
		return writesMaybe
	}
	return writesNo
}

func yesIf(b bool) writes {
	if b {
		return writesYes
	}
	return writesNo
}

// checkMetadataScopes: a policy route scoped by dynamic metadata reads it
// when the request's headers reach the idemgate filter (http_filters[at]).
// A filter that writes it must come before: otherwise the value is absent
// and every request lacks a principal (refused with 401, or, with
// allow_anonymous, all callers share one scope and replay each other's
// responses).
//
// It returns, per policy route, the writers before the idemgate filter, so
// that checkRoutes can tell whether one of them runs on each Envoy route.
func checkMetadataScopes(hcm *hcmv3.HttpConnectionManager, hp string, at int, cfg *policy.Config, cp string, out *findings) map[int][]*hcmv3.HttpFilter {
	writers := map[int][]*hcmv3.HttpFilter{}
	filters := hcm.GetHttpFilters()
	for ri := range cfg.Routes {
		md := cfg.Routes[ri].Scope.Metadata
		if md == nil {
			continue
		}
		where := fmt.Sprintf("policy routes[%d].scope.metadata (%s)", ri, describe(&cfg.Routes[ri], ri))
		var before, after, maybe []int
		for i, hf := range filters {
			if i == at {
				continue
			}
			switch w := filterWrites(hf, md.Filter); {
			case w == writesYes && i < at:
				before = append(before, i)
			case w == writesYes:
				after = append(after, i)
			case w == writesMaybe && i < at:
				maybe = append(maybe, i)
			}
		}
		switch {
		case len(before) > 0:
			for _, i := range before {
				checkJWTPayloadKey(filters[i], index(field(hp, "http_filters"), i), md, where, cp, out)
				writers[ri] = append(writers[ri], filters[i])
			}
		case len(after) > 0:
			out.add(Error, RuleScopeMetadata, index(field(hp, "http_filters"), after[0]), "writes the dynamic metadata %q that %s reads, but comes after the idemgate filter (http_filters[%d]): the principal is absent when the filter reads it, so every request is refused with 401 (or, with allow_anonymous, all callers share one scope); move it before the idemgate filter",
				md.Filter, where, at)
		case len(maybe) > 0:
			out.add(Warning, RuleScopeMetadata, field(cp, "configuration"), "%s reads dynamic metadata %q, which no filter before the idemgate filter is known to write; http_filters%s run code that may: make sure it writes that value before the idemgate filter, or every request lacks a principal",
				where, md.Filter, indexes(maybe))
		default:
			out.add(Error, RuleScopeMetadata, field(cp, "configuration"), "%s reads dynamic metadata %q, but no filter in this http_connection_manager writes it: every request lacks a principal and is refused with 401 (or, with allow_anonymous, all callers share one scope); add that filter (e.g. envoy.filters.http.jwt_authn) before the idemgate filter",
				where, md.Filter)
		}
	}
	return writers
}

// checkWritersRun flags a governed Envoy route on which none of the
// filters that write the scope's metadata runs: turned off there
// (FilterConfig or jwt_authn's PerRouteConfig with disabled), or disabled
// in the chain and not turned on there.
func checkWritersRun(writers []*hcmv3.HttpFilter, r *routev3.Route, vh *routev3.VirtualHost, routePath, vp string, j int, what string, out *findings) {
	if len(writers) == 0 {
		return
	}
	var offAt string
	for _, w := range writers {
		runs, at := runsOn(w, r, vh, routePath, vp)
		if runs {
			return
		}
		if offAt == "" {
			offAt = at
		}
	}
	how := "turns off"
	if offAt == "" {
		offAt, how = routePath, "does not turn on (disabled in the http_filters)"
	}
	out.add(Error, RuleScopeMetadata, offAt, "%s %q on routes[%d], whose traffic the idemgate policy governs (%s) with a principal read from its dynamic metadata: on this route the principal is absent, so every request is refused with 401 (or, with allow_anonymous, all callers share one scope)",
		how, writers[0].GetName(), j, what)
}

// runsOn reports whether the HTTP filter runs on the route, and where a
// per-route configuration turns it off.
func runsOn(hf *hcmv3.HttpFilter, r *routev3.Route, vh *routev3.VirtualHost, routePath, vp string) (bool, string) {
	for _, lvl := range []struct {
		m    map[string]*anypb.Any
		path string
	}{{r.GetTypedPerFilterConfig(), routePath}, {vh.GetTypedPerFilterConfig(), vp}} {
		a, ok := lvl.m[hf.GetName()]
		if !ok {
			continue
		}
		p := key(field(lvl.path, "typed_per_filter_config"), hf.GetName())
		if fc, ok := unpackAs[*routev3.FilterConfig](a); ok {
			return !fc.GetDisabled(), p
		}
		if jr, ok := unpackAs[*jwtv3.PerRouteConfig](a); ok {
			return !jr.GetDisabled(), p
		}
		return true, "" // another per-route config: the filter runs with it
	}
	return !hf.GetDisabled(), ""
}

// checkJWTPayloadKey: jwt_authn writes a verified token's payload (or
// header) under the key a provider's payload_in_metadata (or
// header_in_metadata) names, and nothing else; the scope path's first
// element must be one of those keys.
func checkJWTPayloadKey(hf *hcmv3.HttpFilter, fp string, md *policy.MetadataScope, where, cp string, out *findings) {
	jwt, ok := unpackAs[*jwtv3.JwtAuthentication](hf.GetTypedConfig())
	if !ok {
		return
	}
	var keys []string
	for _, name := range sortedKeys(jwt.GetProviders()) {
		p := jwt.GetProviders()[name]
		for _, k := range []string{p.GetPayloadInMetadata(), p.GetHeaderInMetadata()} {
			if k != "" && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	if slices.Contains(keys, md.Path[0]) {
		return
	}
	what := "no provider sets payload_in_metadata, so it writes no payload"
	if len(keys) > 0 {
		what = fmt.Sprintf("its providers write under %q only", keys)
	}
	out.add(Error, RuleScopeMetadata, field(cp, "configuration"), "%s reads path %q of %q, but the jwt_authn filter at %s does not write %q (%s): every request lacks a principal; set a provider's payload_in_metadata to %q or fix the path",
		where, md.Path, md.Filter, fp, md.Path[0], what, md.Path[0])
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func indexes(is []int) string {
	s := make([]string, len(is))
	for k, i := range is {
		s[k] = fmt.Sprintf("[%d]", i)
	}
	return strings.Join(s, ", ")
}

// bufferFilter is an envoy.filters.http.buffer in the chain. Its limit
// becomes the stream's buffer limit (Envoy applies one limit to the
// request and the response a stream buffers), so it bounds both the
// request body the idemgate filter waits for and the response it stores.
type bufferFilter struct {
	name     string // the http_filters entry's name, the key of per-route configs
	path     string
	limit    uint32
	before   bool // placed before the idemgate filter: its limit is set before the request body is buffered
	disabled bool // disabled unless a route enables it
}

func bufferFilters(hcm *hcmv3.HttpConnectionManager, hp string, at int) []bufferFilter {
	var bs []bufferFilter
	for i, hf := range hcm.GetHttpFilters() {
		b, ok := unpackAs[*bufferv3.Buffer](hf.GetTypedConfig())
		if !ok {
			continue
		}
		bs = append(bs, bufferFilter{
			name: hf.GetName(), path: field(index(field(hp, "http_filters"), i), "typed_config.max_request_bytes"),
			limit: b.GetMaxRequestBytes().GetValue(), before: i < at, disabled: hf.GetDisabled(),
		})
	}
	return bs
}

// limitOn returns the buffer filter's limit on one Envoy route, the path
// that sets it, and false when the filter does not run there.
func (b *bufferFilter) limitOn(r *routev3.Route, vh *routev3.VirtualHost, rp, vp string) (uint32, string, bool) {
	for _, lvl := range []struct {
		m    map[string]*anypb.Any
		path string
	}{{r.GetTypedPerFilterConfig(), rp}, {vh.GetTypedPerFilterConfig(), vp}} {
		a, ok := lvl.m[b.name]
		if !ok {
			continue
		}
		p := key(field(lvl.path, "typed_per_filter_config"), b.name)
		if fc, ok := unpackAs[*routev3.FilterConfig](a); ok {
			if fc.GetDisabled() {
				return 0, "", false
			}
			return b.limit, b.path, true // enabled here with the filter's own settings
		}
		if pr, ok := unpackAs[*bufferv3.BufferPerRoute](a); ok {
			if pr.GetDisabled() {
				return 0, "", false
			}
			if o := pr.GetBuffer(); o != nil {
				return o.GetMaxRequestBytes().GetValue(), field(p, "buffer.max_request_bytes"), true
			}
		}
		break
	}
	if b.disabled {
		return 0, "", false
	}
	return b.limit, b.path, true
}

// checkBufferFilters flags, on one governed Envoy route, a buffer filter
// whose limit is below what the policy route buffers.
func checkBufferFilters(bufs []bufferFilter, r *routev3.Route, vh *routev3.VirtualHost, routePath, vp string, j int, pr *policy.Route, what string, out *findings) {
	for k := range bufs {
		b := &bufs[k]
		limit, path, on := b.limitOn(r, vh, routePath, vp)
		if !on {
			continue
		}
		if b.before && int64(limit) < int64(pr.MaxBodyBytes) {
			out.add(Error, RuleBufferLimit, path, "is %d on routes[%d], below max_body_bytes %d of the policy route that governs it (%s): the buffer filter sets the stream's buffer limit, so Envoy would answer 413 to bodies the policy admits",
				limit, j, pr.MaxBodyBytes, what)
		}
		if int64(limit) < int64(pr.MaxStoredResponseBytes) {
			out.add(Error, RuleResponseBuffer, path, "is %d on routes[%d], below max_stored_response_bytes %d of the policy route that governs it (%s): the buffer filter sets the stream's buffer limit, which bounds the response the idemgate filter buffers to store; a larger response would be replaced by Envoy's 500 after the operation ran",
				limit, j, pr.MaxStoredResponseBytes, what)
		}
	}
}
