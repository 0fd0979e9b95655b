package envoycheck

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/idemgate/idemgate/plugin/policy"
)

const (
	// DefaultBufferLimit is Envoy's per_connection_buffer_limit_bytes when
	// a listener or cluster leaves it unset.
	DefaultBufferLimit = 1 << 20
	// ControlPlaneIdleClose is how long the control plane keeps an idle
	// connection open (http.Server.IdleTimeout in controlplane/main.go; a
	// test keeps the two equal). Envoy must close first: a callout sent on
	// a connection the server is closing fails.
	ControlPlaneIdleClose = 5 * time.Minute
	// envoyDefaultIdleTimeout is Envoy's upstream idle_timeout when unset.
	envoyDefaultIdleTimeout = time.Hour

	// envoyDefaultRouteTimeout is a route's upstream timeout when unset.
	envoyDefaultRouteTimeout = 15 * time.Second

	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// checkIdempotency finds every idemgate wasm filter in the listeners'
// HTTP connection managers and checks what surrounds it.
func checkIdempotency(bs *bootstrapv3.Bootstrap) []Finding {
	var out findings
	clusters := map[string]int{}
	for i, c := range bs.GetStaticResources().GetClusters() {
		if _, dup := clusters[c.GetName()]; !dup {
			clusters[c.GetName()] = i
		}
	}
	env := &envInfo{list: bs.GetStaticResources().GetClusters(), clusters: clusters, dynamicClusters: bs.GetDynamicResources().GetCdsConfig() != nil || bs.GetDynamicResources().GetCdsResourcesLocator() != ""}
	governed := 0
	for i, l := range bs.GetStaticResources().GetListeners() {
		lp := index("static_resources.listeners", i)
		chains := l.GetFilterChains()
		paths := make([]string, len(chains))
		for j := range chains {
			paths[j] = index(field(lp, "filter_chains"), j)
		}
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(chains, dc)
			paths = append(paths, field(lp, "default_filter_chain"))
		}
		for j, fc := range chains {
			for k, f := range fc.GetFilters() {
				hcm, ok := unpackAs[*hcmv3.HttpConnectionManager](f.GetTypedConfig())
				if !ok {
					continue
				}
				hp := field(index(field(paths[j], "filters"), k), "typed_config")
				governed += env.checkHCM(hcm, hp, l, lp, &out)
			}
		}
	}
	if governed == 0 {
		out.add(Warning, RuleNotGoverned, "", "no idemgate wasm filter (envoy.filters.http.wasm running idempotency.wasm, or with a policy holding control_plane) in any listener's http_connection_manager: nothing is governed")
	}
	return out
}

type envInfo struct {
	list            []*clusterv3.Cluster
	clusters        map[string]int // name → index in list
	dynamicClusters bool
}

// unpackAs unpacks a into a T, reporting false when a holds another type.
func unpackAs[T proto.Message](a *anypb.Any) (T, bool) {
	var zero T
	if a == nil {
		return zero, false
	}
	m, err := unpack(a)
	if err != nil {
		return zero, false
	}
	t, ok := m.(T)
	return t, ok
}

// checkHCM checks one HTTP connection manager and returns how many
// idemgate filters it holds.
func (env *envInfo) checkHCM(hcm *hcmv3.HttpConnectionManager, hp string, l *listenerv3.Listener, lp string, out *findings) int {
	routerAt := -1
	for i, hf := range hcm.GetHttpFilters() {
		if _, ok := unpackAs[*routerv3.Router](hf.GetTypedConfig()); ok {
			routerAt = i
			break
		}
	}
	n := 0
	for i, hf := range hcm.GetHttpFilters() {
		w, ok := unpackAs[*wasmfilterv3.Wasm](hf.GetTypedConfig())
		if !ok {
			continue
		}
		fp := index(field(hp, "http_filters"), i)
		pc := w.GetConfig()
		cp := field(field(fp, "typed_config"), "config")
		text, textErr := configurationText(pc.GetConfiguration())
		if !isIdemgate(pc, text) {
			out.add(Warning, RuleOtherWasm, fp, "a wasm filter that is not idemgate's (its code is not idempotency.wasm and its configuration has no control_plane): not checked")
			continue
		}
		n++
		if routerAt >= 0 && i > routerAt {
			out.add(Error, RuleFilterOrder, fp, "comes after the router (http_filters[%d]): the router ends the filter chain, so this filter never runs and no request is governed; put it before the router", routerAt)
		}
		//lint:ignore SA1019 Envoy still honours the deprecated fail_open, so a configuration setting it must be rejected
		if pc.GetFailOpen() {
			out.add(Error, RuleFailOpen, field(cp, "fail_open"), "true: when the wasm VM fails, governed requests would pass upstream unchecked and a retry could execute twice; leave it false (the policy's failure_mode covers an unreachable control plane)")
		}
		if pc.GetFailurePolicy() == wasmv3.FailurePolicy_FAIL_OPEN {
			out.add(Error, RuleFailOpen, field(cp, "failure_policy"), "FAIL_OPEN: when the wasm VM fails, governed requests would pass upstream unchecked and a retry could execute twice; use FAIL_CLOSED or FAIL_RELOAD")
		}
		if textErr != nil {
			out.add(Error, RulePolicy, field(cp, "configuration"), "%v", textErr)
			continue
		}
		cfg, err := policy.Parse([]byte(text))
		if err != nil {
			out.add(Error, RulePolicy, field(cp, "configuration"), "the idemgate policy is invalid (the filter would refuse to start): %v", err)
			continue
		}
		maxBody, maxStored := 0, 0
		for _, r := range cfg.Routes {
			maxBody, maxStored = max(maxBody, r.MaxBodyBytes), max(maxStored, r.MaxStoredResponseBytes)
		}
		env.checkControlPlane(cfg, field(cp, "configuration"), out)
		checkListenerBuffer(l, lp, maxBody, maxStored, out)
		writers := checkMetadataScopes(hcm, hp, i, cfg, cp, out)
		switch {
		case hcm.GetRouteConfig() != nil:
			checkRoutes(hcm.GetRouteConfig(), field(hp, "route_config"), cfg, hf.GetName(), chainInfo{buffers: bufferFilters(hcm, hp, i), writers: writers}, out)
			checkRouteSelection(filteredRoutes(hcm.GetRouteConfig(), field(hp, "route_config"), hf.GetName()), cfg, cp, out)
		default:
			out.add(Warning, RuleRoutesUnchecked, hp, "routes come from RDS or scoped routes: their retry policies and buffer limits cannot be checked here")
		}
	}
	return n
}

// isIdemgate tells idemgate's filter from another wasm filter, so that
// another plugin's configuration is not parsed as our policy.
func isIdemgate(pc *wasmv3.PluginConfig, text string) bool {
	code := pc.GetVmConfig().GetCode()
	src := code.GetLocal().GetFilename() + " " + code.GetRemote().GetHttpUri().GetUri()
	if strings.Contains(src, "idempotency") || strings.Contains(src, "idemgate") {
		return true
	}
	return strings.Contains(text, `"control_plane"`)
}

// configurationText is what Envoy hands the plugin in proxy_on_configure:
// a StringValue's or BytesValue's value as is, a Struct as JSON.
func configurationText(a *anypb.Any) (string, error) {
	if a == nil {
		return "", nil // policy.Parse then says it is empty
	}
	m, err := unpack(a)
	if err != nil {
		return "", err
	}
	switch v := m.(type) {
	case *wrapperspb.StringValue:
		return v.GetValue(), nil
	case *wrapperspb.BytesValue:
		return string(v.GetValue()), nil
	case *structpb.Struct:
		b, err := protojson.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("the configuration Struct cannot be written as JSON: %w", err)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("is a %s; the idemgate policy is JSON in a google.protobuf.StringValue", a.GetTypeUrl())
}

func (env *envInfo) checkControlPlane(cfg *policy.Config, cp string, out *findings) {
	name := cfg.ControlPlane.Cluster
	ci, ok := env.clusters[name]
	if !ok {
		if env.dynamicClusters {
			out.add(Warning, RuleCluster, cp, "control_plane.cluster %q is not a static cluster; make sure CDS serves it, or every callout fails", name)
		} else {
			out.add(Error, RuleCluster, cp, "control_plane.cluster %q is not among static_resources.clusters: every callout would fail (503 when fail-closed, ungoverned when fail-open)", name)
		}
		return
	}
	c, cpath := env.list[ci], index("static_resources.clusters", ci)
	opts, explicit := httpOptions(c)
	if h := opts.GetExplicitHttpConfig(); h != nil && (h.GetHttp2ProtocolOptions() != nil || h.GetHttp3ProtocolOptions() != nil) {
		out.add(Error, RuleCluster, field(cpath, "typed_extension_protocol_options"), "the control-plane cluster %q speaks HTTP/2 or HTTP/3; the control plane serves HTTP/1.1 only", name)
	}
	//lint:ignore SA1019 Envoy still honours the deprecated cluster-level field: a control-plane cluster setting it speaks HTTP/2
	if c.GetHttp2ProtocolOptions() != nil {
		out.add(Error, RuleCluster, field(cpath, "http2_protocol_options"), "the control-plane cluster %q speaks HTTP/2; the control plane serves HTTP/1.1 only", name)
	}
	idle := envoyDefaultIdleTimeout
	common := opts.GetCommonHttpProtocolOptions()
	if !explicit {
		//lint:ignore SA1019 without typed protocol options Envoy still takes the idle timeout from this deprecated field
		common = c.GetCommonHttpProtocolOptions()
	}
	if d := common.GetIdleTimeout(); d != nil {
		idle = d.AsDuration()
	}
	if idle <= 0 || idle >= ControlPlaneIdleClose {
		what := fmt.Sprintf("is %v", idle)
		switch {
		case common.GetIdleTimeout() == nil:
			what = fmt.Sprintf("is unset (Envoy's default %v)", envoyDefaultIdleTimeout)
		case idle <= 0:
			what = "is 0 (never)"
		}
		out.add(Warning, RuleIdleTimeout, cpath, "the idle_timeout of the control-plane cluster %q %s, not below the control plane's own idle close of %v: Envoy may send a callout on a connection the server is closing, and that callout fails; set typed_extension_protocol_options[%q].common_http_protocol_options.idle_timeout to e.g. 60s",
			name, what, ControlPlaneIdleClose, httpProtocolOptionsKey)
	}
}

// httpOptions returns the cluster's HttpProtocolOptions, and whether it
// has any (they replace the deprecated cluster-level fields).
func httpOptions(c *clusterv3.Cluster) (*upstreamhttpv3.HttpProtocolOptions, bool) {
	a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if !ok {
		return nil, false
	}
	o, ok := unpackAs[*upstreamhttpv3.HttpProtocolOptions](a)
	return o, ok
}

// checkListenerBuffer: the listener's per-connection limit is each
// stream's buffer limit, for the request and the response alike. Envoy
// buffers a request body the filter waits for up to it and answers 413
// itself past it, so a limit below max_body_bytes refuses bodies the
// policy admits. The filter buffers an upstream response up to
// max_stored_response_bytes to store it; past the limit Envoy drops what
// it buffered and answers 500 itself (rs_too_large), after the upstream
// has executed the request: the client is told it failed, and what the
// filter stores is not what the upstream said. (The upstream cluster's
// per_connection_buffer_limit_bytes only sizes its reads, flow control,
// and bounds no buffered response.)
func checkListenerBuffer(l *listenerv3.Listener, lp string, maxBody, maxStored int, out *findings) {
	limit := int64(DefaultBufferLimit)
	where := fmt.Sprintf("unset, so Envoy's default %d", DefaultBufferLimit)
	if v := l.GetPerConnectionBufferLimitBytes(); v != nil {
		limit, where = int64(v.GetValue()), fmt.Sprint(v.GetValue())
	}
	if limit < int64(maxBody) {
		out.add(Error, RuleBufferLimit, field(lp, "per_connection_buffer_limit_bytes"), "is %s, below the policy's max_body_bytes %d: Envoy would answer 413 to bodies the policy admits; set it to at least %d", where, maxBody, maxBody)
	}
	if limit < int64(maxStored) {
		out.add(Error, RuleResponseBuffer, field(lp, "per_connection_buffer_limit_bytes"), "is %s, below the policy's max_stored_response_bytes %d: a response larger than the limit that the filter buffers to store would be replaced by Envoy's own 500 after the upstream executed the request; set it to at least %d or lower max_stored_response_bytes", where, maxStored, maxStored)
	}
}

// chainInfo is what checkRoutes needs to know of the HTTP filter chain:
// its buffer filters, and per policy route the filters before ours that
// write the scope's metadata.
type chainInfo struct {
	buffers []bufferFilter
	writers map[int][]*hcmv3.HttpFilter
}

// checkRoutes flags retries, copies and small buffer limits on the routes
// whose traffic the policy governs.
func checkRoutes(rc *routev3.RouteConfiguration, rp string, cfg *policy.Config, filterName string, chain chainInfo, out *findings) {
	for i, vh := range rc.GetVirtualHosts() {
		vp := index(field(rp, "virtual_hosts"), i)
		for j, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			if ra == nil {
				continue // redirect or direct response: nothing goes upstream
			}
			if filterDisabled(r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), filterName) {
				continue
			}
			routePath := index(field(vp, "routes"), j)
			er := newEnvoyRoute(r, routePath, j)
			pr := governingRouteOf(&er, cfg)
			if pr < 0 {
				continue
			}
			what := describe(&cfg.Routes[pr], pr)
			checkRetries(ra, vh, rc, routePath, vp, j, what, out)
			checkBufferFilters(chain.buffers, r, vh, routePath, vp, j, &cfg.Routes[pr], what, out)
			checkWritersRun(chain.writers[pr], r, vh, routePath, vp, j, what, out)
			checkTimeout(ra, routePath, &cfg.Routes[pr], what, out)
			//lint:ignore SA1019 Envoy still honours the deprecated route limit: one below max_body_bytes must be rejected
			limit, lpath := r.GetPerRequestBufferLimitBytes(), field(routePath, "per_request_buffer_limit_bytes")
			if limit == nil {
				//lint:ignore SA1019 the same deprecated limit, on the virtual host
				limit, lpath = vh.GetPerRequestBufferLimitBytes(), field(vp, "per_request_buffer_limit_bytes")
			}
			if limit != nil && int64(limit.GetValue()) < int64(cfg.Routes[pr].MaxBodyBytes) {
				out.add(Error, RuleBufferLimit, lpath, "is %d, below max_body_bytes %d of the policy route that governs routes[%d] (%s): Envoy would answer 413 to bodies the policy admits", limit.GetValue(), cfg.Routes[pr].MaxBodyBytes, j, what)
			}
		}
	}
}

// checkRetries: Envoy must never send governed traffic upstream twice on
// its own, behind the filter's back: no router retries (a route's policy
// replaces its virtual host's; num_retries 0 turns retries off), no
// hedging, no mirroring to a shadow cluster, no internal redirects that
// re-send the request elsewhere. A client retry with the same key is the
// safe way.
func checkRetries(ra *routev3.RouteAction, vh *routev3.VirtualHost, rc *routev3.RouteConfiguration, routePath, vp string, j int, what string, out *findings) {
	rap := field(routePath, "route")
	const resend = "Envoy would re-send a request the upstream may already have executed"
	switch {
	case ra.GetRetryPolicy() != nil:
		if retries(ra.GetRetryPolicy()) {
			out.add(Error, RuleRetry, field(rap, "retry_policy"), "retries traffic the idemgate policy governs (%s): %s; remove it (a client retry with the same key is safe), or set num_retries: 0", what, resend)
		}
	case ra.GetRetryPolicyTypedConfig() != nil:
		out.add(Error, RuleRetry, field(rap, "retry_policy_typed_config"), "retries traffic the idemgate policy governs (%s): %s; remove it", what, resend)
	case vh.GetRetryPolicy() != nil:
		if retries(vh.GetRetryPolicy()) {
			out.add(Error, RuleRetry, field(vp, "retry_policy"), "applies to routes[%d], whose traffic the idemgate policy governs (%s): %s; remove it, or give that route its own retry_policy with num_retries: 0", j, what, resend)
		}
	case vh.GetRetryPolicyTypedConfig() != nil:
		out.add(Error, RuleRetry, field(vp, "retry_policy_typed_config"), "applies to routes[%d], whose traffic the idemgate policy governs (%s): %s; remove it", j, what, resend)
	}
	for _, h := range []struct {
		p    *routev3.HedgePolicy
		path string
	}{{ra.GetHedgePolicy(), field(rap, "hedge_policy")}, {vh.GetHedgePolicy(), field(vp, "hedge_policy")}} {
		switch {
		case h.p.GetHedgeOnPerTryTimeout():
			out.add(Error, RuleRetry, h.path, "hedge_on_per_try_timeout sends a second copy of traffic the idemgate policy governs (%s, routes[%d])", what, j)
		case h.p.GetInitialRequests().GetValue() > 1 || h.p.GetAdditionalRequestChance().GetNumerator() > 0:
			out.add(Error, RuleRetry, h.path, "sends more than one copy of traffic the idemgate policy governs (%s, routes[%d]): each copy may execute; remove initial_requests and additional_request_chance", what, j)
		}
	}
	// The most specific non-empty list of mirror policies applies.
	mirrors, mpath := ra.GetRequestMirrorPolicies(), field(rap, "request_mirror_policies")
	if len(mirrors) == 0 {
		mirrors, mpath = vh.GetRequestMirrorPolicies(), field(vp, "request_mirror_policies")
	}
	if len(mirrors) == 0 {
		mirrors, mpath = rc.GetRequestMirrorPolicies(), "the route_config's request_mirror_policies"
	}
	if len(mirrors) > 0 {
		out.add(Error, RuleRetry, mpath, "mirrors traffic the idemgate policy governs (%s, routes[%d]) to cluster %q, which executes every copy unguarded; remove it, or mirror only to a cluster that cannot act on it", what, j, mirrors[0].GetCluster())
	}
	//lint:ignore SA1019 Envoy still follows redirects on the deprecated internal_redirect_action, so it must be warned about
	if ra.GetInternalRedirectPolicy() != nil || ra.GetInternalRedirectAction() == routev3.RouteAction_HANDLE_INTERNAL_REDIRECT {
		out.add(Warning, RuleRetry, rap, "follows upstream redirects internally on traffic the idemgate policy governs (%s): Envoy re-sends the request to the redirect's target after the upstream answered, so the operation may run there too, unguarded by its key", what)
	}
}

// retries reports whether a retry policy retries at all: num_retries
// defaults to 1, and an explicit 0 turns retries off.
func retries(p *routev3.RetryPolicy) bool {
	n := p.GetNumRetries()
	return n == nil || n.GetValue() > 0
}

// checkTimeout: while the upstream works on a governed request the key is
// held by a lease; if the lease ends first, a retry takes the key over and
// executes the operation a second time. The route's timeout bounds the
// wait for the upstream, so it should end before the lease.
func checkTimeout(ra *routev3.RouteAction, routePath string, pr *policy.Route, what string, out *findings) {
	timeout, desc := envoyDefaultRouteTimeout, fmt.Sprintf("unset (Envoy's default %v)", envoyDefaultRouteTimeout)
	if t := ra.GetTimeout(); t != nil {
		timeout, desc = t.AsDuration(), t.AsDuration().String()
	}
	switch {
	case timeout == 0:
		out.add(Warning, RuleRouteTimeout, field(field(routePath, "route"), "timeout"), "is 0 (none) on traffic the idemgate policy governs (%s): an upstream slower than the lease %v lets a retry take the key over and execute again; set it below the lease", what, pr.Lease)
	case timeout >= pr.Lease:
		out.add(Warning, RuleRouteTimeout, field(field(routePath, "route"), "timeout"), "is %s, not below the lease %v of the policy route that governs it (%s): an upstream slower than the lease lets a retry take the key over and execute again; set it below the lease", desc, pr.Lease, what)
	}
}

func describe(r *policy.Route, i int) string {
	m := r.Match
	p := m.Path
	switch {
	case m.Prefix != "":
		p = "prefix " + m.Prefix
	case m.Glob != "":
		p = "glob " + m.Glob
	}
	if m.RouteName != "" {
		p = strings.TrimSpace("Envoy route " + strconv.Quote(m.RouteName) + " " + p)
	}
	if r.Name != "" {
		return strings.TrimSpace(fmt.Sprintf("policy routes[%d] %q: %s %s", i, r.Name, strings.Join(m.Methods, ","), p))
	}
	return fmt.Sprintf("policy routes[%d]: %s %s", i, strings.Join(m.Methods, ","), p)
}

// filterDisabled reports whether the route (else its virtual host) turns
// the named filter off with a FilterConfig{disabled: true}.
func filterDisabled(route, vhost map[string]*anypb.Any, name string) bool {
	for _, m := range []map[string]*anypb.Any{route, vhost} {
		if a, ok := m[name]; ok {
			fc, ok := unpackAs[*routev3.FilterConfig](a)
			return ok && fc.GetDisabled()
		}
	}
	return false
}

// governingRoute returns the index of a policy route whose own match
// (path, not route_name or metadata: see governingRouteOf) may govern
// requests this Envoy route matches, or -1 when none can. In doubt
// (regular expressions, case-insensitive matching, extension matchers) it
// answers that the first policy route may: a false alarm costs a look, a
// missed retry costs a double execution.
func governingRoute(m *routev3.RouteMatch, cfg *policy.Config) int {
	methods := envoyMethods(m.GetHeaders())
	for i := range cfg.Routes {
		pr := &cfg.Routes[i]
		if !pr.Match.SelectsByPath() {
			continue
		}
		if methods != nil && !slices.ContainsFunc(pr.Match.Methods, func(x string) bool { return slices.Contains(methods, x) }) {
			continue
		}
		if pathOverlaps(m, pr) {
			return i
		}
	}
	return -1
}

func pathOverlaps(m *routev3.RouteMatch, pr *policy.Route) bool {
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		return true
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Path:
		// The policy's own Match logic decides for an exact path.
		one := policy.Config{Routes: []policy.Route{*pr}}
		for _, method := range pr.Match.Methods {
			if one.Match(sampleHost(pr.Match.Host), ps.Path, method) != nil {
				return true
			}
		}
		return false
	case *routev3.RouteMatch_Prefix:
		return prefixOverlaps(ps.Prefix, pr)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		return prefixOverlaps(ps.PathSeparatedPrefix, pr) // a narrower prefix match
	}
	return true
}

// prefixOverlaps: some path starts with p and matches pr.
func prefixOverlaps(p string, pr *policy.Route) bool {
	m := pr.Match
	switch {
	case m.Path != "":
		return strings.HasPrefix(m.Path, p)
	case m.Prefix != "":
		return strings.HasPrefix(m.Prefix, p) || strings.HasPrefix(p, m.Prefix)
	}
	// A glob: what precedes its first wildcard is literal.
	lit := strings.TrimSuffix(m.Glob, "/**")
	if i := strings.IndexByte(lit, '*'); i >= 0 {
		lit = lit[:i]
	}
	return strings.HasPrefix(lit, p) || strings.HasPrefix(p, lit)
}

// sampleHost is a host the policy host pattern matches: Envoy routes
// are compared on paths and methods; hosts are taken as overlapping.
func sampleHost(pattern string) string {
	if strings.HasPrefix(pattern, "*") {
		return "x" + pattern[1:]
	}
	return pattern
}

// envoyMethods returns the methods a route's :method header matchers
// admit, or nil when they do not restrict them to a known list.
func envoyMethods(hs []*routev3.HeaderMatcher) []string {
	for _, h := range hs {
		if h.GetName() != ":method" || h.GetInvertMatch() {
			continue
		}
		//lint:ignore SA1019 Envoy still matches on the deprecated exact_match, so a route can restrict methods with it
		exact := h.GetExactMatch()
		if sm := h.GetStringMatch(); sm != nil && !sm.GetIgnoreCase() {
			exact = sm.GetExact()
		}
		if exact != "" {
			return []string{exact}
		}
	}
	return nil
}
