package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/canon"
)

func (raw *rawRoute) build(path string) (Route, error) {
	r := Route{KeyHeader: DefaultKeyHeader, Required: true, MaxKeyLength: MaxKeyLength, MaxBodyBytes: DefaultMaxBodyBytes, MaxStoredResponseBytes: DefaultMaxStoredResponseBytes,
		EdgeCacheMaxEntryBytes: DefaultEdgeCacheMaxEntryBytes, ReplaySetCookie: raw.ReplaySetCookie}
	var err error
	if r.Name, r.Match, err = raw.buildSelection(path); err != nil {
		return r, err
	}
	if raw.KeyHeader != nil {
		if r.KeyHeader, err = headerName(path+".key_header", *raw.KeyHeader); err != nil {
			return r, err
		}
	}
	if r.KeyFormat, err = oneOf(path+".key_format", raw.KeyFormat, KeyAny, KeyAny, KeySFString); err != nil {
		return r, err
	}
	if raw.Required != nil {
		r.Required = *raw.Required
	}
	if n := raw.MaxKeyLength; n != nil {
		if *n < 1 || *n > MaxKeyLength {
			return r, fieldErr(path+".max_key_length", "must be 1 to %d, got %d", MaxKeyLength, *n)
		}
		r.MaxKeyLength = int(*n)
	}
	if raw.Scope == nil {
		return r, fieldErr(path+".scope", "required: which request headers or metadata identify the principal, so that clients never share keys")
	}
	if r.Scope, err = raw.Scope.build(path + ".scope"); err != nil {
		return r, err
	}
	if raw.Fingerprint != nil {
		if r.Fingerprint, err = raw.Fingerprint.build(path + ".fingerprint"); err != nil {
			return r, err
		}
	}
	if n := raw.MaxBodyBytes; n != nil {
		if *n <= 0 {
			return r, fieldErr(path+".max_body_bytes", "must be > 0, got %d", *n)
		}
		if *n > MaxMaxBodyBytes {
			return r, fieldErr(path+".max_body_bytes", "must be at most %d (64 MiB), got %d", MaxMaxBodyBytes, *n)
		}
		r.MaxBodyBytes = int(*n)
	}
	if n := raw.MaxStoredResp; n != nil {
		if *n < 1 || *n > MaxMaxStoredResponseBytes {
			return r, fieldErr(path+".max_stored_response_bytes", "must be 1 to %d (64 MiB), got %d", MaxMaxStoredResponseBytes, *n)
		}
		r.MaxStoredResponseBytes = int(*n)
	}
	if n := raw.EdgeMaxEntry; n != nil {
		if *n < 1 || *n > MaxEdgeCacheMaxEntryBytes {
			return r, fieldErr(path+".edge_cache_max_entry_bytes", "must be 1 to %d (16 MiB), got %d", MaxEdgeCacheMaxEntryBytes, *n)
		}
		r.EdgeCacheMaxEntryBytes = int(*n)
	}
	if err = raw.buildTimes(path, &r); err != nil {
		return r, err
	}
	if r.StoreStatuses, r.ReleaseStatuses, r.IndeterminateStatuses, err = statuses(path, raw); err != nil {
		return r, err
	}
	if r.OnDuplicate, err = oneOf(path+".on_duplicate", raw.OnDuplicate, Replay, Replay, Reject); err != nil {
		return r, err
	}
	if r.FailureMode, err = oneOf(path+".failure_mode", raw.FailureMode, FailClosed, FailClosed, FailOpen); err != nil {
		return r, err
	}
	if r.OnIndeterminate, err = oneOf(path+".on_indeterminate", raw.OnIndeterminate, Lock, Lock, ReleaseKey, Reconcile); err != nil {
		return r, err
	}
	if r.ReplayHeaders, err = replayHeaders(path+".replay_headers", raw.ReplayHeaders, raw.ReplaySetCookie); err != nil {
		return r, err
	}
	if r.NotExecutedHeader, err = notExecutedHeader(path+".not_executed_header", raw.NotExecuted, &r); err != nil {
		return r, err
	}
	if err = raw.buildReconcile(path, &r); err != nil {
		return r, err
	}
	if r.ReplayedHeader, err = replayedHeader(path+".replay_header", raw.ReplayedHeader, &r); err != nil {
		return r, err
	}
	r.AllowAnonymous = raw.AllowAnonymous
	if r.HostAliases, err = hostAliases(path+".host_aliases", raw.HostAliases); err != nil {
		return r, err
	}
	// An alias applies only to requests the route matches: one outside
	// match.host is a typo or a dead entry, refused like an unknown field.
	for i, e := range raw.HostAliases {
		for j, h := range append([]string{e.Host}, e.Aliases...) {
			if r.Match.matchHost(normalizeHost(h)) {
				continue
			}
			p := fmt.Sprintf("%s.host_aliases[%d].host", path, i)
			if j > 0 {
				p = fmt.Sprintf("%s.host_aliases[%d].aliases[%d]", path, i, j-1)
			}
			return r, fieldErr(p, "%q is outside match.host %q: the route never sees its requests", h, r.Match.Host)
		}
	}
	return r, nil
}

// buildReconcile sets reconcile_target and attempt_header. Both apply
// only with on_indeterminate: "reconcile"; elsewhere they would do
// nothing, so they are refused like a typo. Needs the key header, the
// scope and the fingerprint built.
func (raw *rawRoute) buildReconcile(path string, r *Route) error {
	if r.OnIndeterminate != Reconcile {
		switch {
		case raw.ReconcileTarget != nil:
			return fieldErr(path+".reconcile_target", "applies only with on_indeterminate: \"reconcile\"")
		case raw.AttemptHeader != nil:
			return fieldErr(path+".attempt_header", "applies only with on_indeterminate: \"reconcile\"")
		}
		return nil
	}
	if r.FailureMode == FailOpen {
		// A request forwarded ungoverned carries no attempt id, yet the
		// reserve whose answer was lost may have made a reservation: the
		// lookup would ask about an attempt the upstream never saw, and
		// release the key on its true "not executed" while the request ran.
		return fieldErr(path+".failure_mode", "\"open\" cannot go with on_indeterminate: \"reconcile\": a request forwarded ungoverned carries no attempt id, and a reservation its lost reserve made would be released on the upstream's \"not executed\" for an attempt it never saw")
	}
	if t := raw.ReconcileTarget; t != nil {
		if !validTargetName(*t) {
			return fieldErr(path+".reconcile_target", "want a target name of 1 to %d letters, digits, '_' or '-' (a --reconcile-url NAME of the control plane), got %q", MaxReconcileTargetLen, *t)
		}
		r.ReconcileTarget = *t
	}
	var err error
	r.AttemptHeader, err = attemptHeader(path+".attempt_header", raw.AttemptHeader, r)
	return err
}

// validTargetName accepts 1 to MaxReconcileTargetLen of [A-Za-z0-9_-],
// what the control plane accepts: given, it is never empty.
func validTargetName(s string) bool {
	return s != "" && api.ValidateReconcileTarget(api.LeaseReconcile, s) == nil
}

// requestNeeds are request headers the attempt header must not be: the
// filter removes every client value of the attempt header, so naming one
// of these would strip the request's framing or credentials.
var requestNeeds = []string{
	"authorization", "connection", "content-encoding", "content-length", "content-type",
	"cookie", "expect", "host", "keep-alive", "proxy-authorization", "proxy-connection",
	"te", "trailer", "transfer-encoding", "upgrade",
}

// attemptHeader checks the attempt header, the default as much as a
// configured one: the filter replaces the client's values of it with the
// token, so it must not be a header the filter reads from the client
// (key, scope, fingerprint) or one the request needs.
func attemptHeader(path string, name *string, r *Route) (string, error) {
	n, given := DefaultAttemptHeader, ""
	if name != nil {
		var err error
		if n, err = headerName(path, *name); err != nil {
			return "", err
		}
	} else {
		given = " (the default)"
	}
	switch {
	case strings.HasPrefix(n, ":"):
		return "", fieldErr(path, "want a request header name, not a pseudo-header, got %q", *name)
	case n == r.KeyHeader:
		return "", fieldErr(path, "%s%s is the key header; name another attempt_header", n, given)
	case slices.Contains(r.Scope.Headers, n):
		return "", fieldErr(path, "%s%s is a scope header, which identifies the principal; name another attempt_header", n, given)
	case slices.Contains(r.Fingerprint.Headers, n):
		return "", fieldErr(path, "%s%s counts in the fingerprint (fingerprint.headers), but the filter replaces the client's value; name another attempt_header", n, given)
	case slices.Contains(requestNeeds, n):
		return "", fieldErr(path, "%s is a header requests need; the filter removes the client's values of the attempt header", n)
	}
	return n, nil
}

// hostAliases builds the alias → canonical host map: each entry names a
// host and the other hosts whose requests share its records. An alias is
// named once, and never as another entry's host (no chains).
func hostAliases(path string, raw []rawHostAlias) (map[string]string, error) {
	if raw == nil {
		return nil, nil
	}
	if len(raw) == 0 {
		return nil, fieldErr(path, "must not be empty; leave it out when no hosts share records")
	}
	canonical := map[string]bool{}
	for i, e := range raw {
		h, err := exactHost(e.Host)
		if err != nil {
			return nil, wrapField(fmt.Sprintf("%s[%d].host", path, i), err)
		}
		if canonical[h] {
			return nil, fieldErr(fmt.Sprintf("%s[%d].host", path, i), "%q appears twice", h)
		}
		canonical[h] = true
	}
	out := map[string]string{}
	for i, e := range raw {
		p := fmt.Sprintf("%s[%d].aliases", path, i)
		if len(e.Aliases) == 0 {
			return nil, fieldErr(p, "required: the hosts that share the records of %q", e.Host)
		}
		h, _ := exactHost(e.Host)
		for j, a := range e.Aliases {
			pa := fmt.Sprintf("%s[%d]", p, j)
			n, err := exactHost(a)
			switch {
			case err != nil:
				return nil, wrapField(pa, err)
			case canonical[n]:
				return nil, fieldErr(pa, "%q is a host of host_aliases itself; name each host once", n)
			case out[n] != "":
				return nil, fieldErr(pa, "%q is already an alias of %q", n, out[n])
			}
			out[n] = h
		}
	}
	return out, nil
}

// exactHost checks a host with an optional port, without wildcard, and
// returns it as the fingerprint counts a request's host
// (canon.NormalizeHost: lower case, no default port).
func exactHost(h string) (string, error) {
	name, port := canon.SplitHost(h)
	if port != "" {
		p := strings.TrimPrefix(port, ":")
		n, err := strconv.Atoi(p)
		if len(port) == 1 || !strings.HasPrefix(port, ":") || err != nil || n < 1 || n > 65535 || p[0] == '0' || p[0] == '+' {
			return "", fmt.Errorf("want host or host:port (a port 1 to 65535), got %q", h)
		}
	}
	if strings.HasPrefix(name, "*") {
		return "", fmt.Errorf("want an exact host, not a wildcard, got %q", h)
	}
	if _, err := validHost(name); err != nil {
		return "", err
	}
	return canon.NormalizeHost(h), nil
}

// CanonicalHost returns the host a request's :authority counts as in the
// fingerprint: canon.NormalizeHost of it, or the host it is an alias of.
func (r *Route) CanonicalHost(authority string) string {
	h := canon.NormalizeHost(authority)
	if c, ok := r.HostAliases[h]; ok {
		return c
	}
	return h
}

func (raw *rawRoute) buildTimes(path string, r *Route) error {
	var err error
	if r.TTL, err = duration(path+".ttl", raw.TTL, DefaultTTL, MinLease, api.MaxTTL); err != nil {
		return err
	}
	if r.Lease, err = duration(path+".lease", raw.Lease, min(DefaultLease, r.TTL), MinLease, api.MaxTTL); err != nil {
		return err
	}
	if r.EdgeCacheTTL, err = duration(path+".edge_cache_ttl", raw.EdgeCacheTTL, DefaultEdgeCacheTTL, 0, MaxEdgeCacheTTL); err != nil {
		return err
	}
	if r.Lease > r.TTL {
		return fieldErr(path+".lease", "%v is longer than the ttl %v", r.Lease, r.TTL)
	}
	if r.OnInProgress, err = oneOf(path+".on_in_progress", raw.OnInProgress, Conflict, Conflict, Wait); err != nil {
		return err
	}
	if r.OnInProgress != Wait {
		if raw.WaitTimeout != nil {
			return fieldErr(path+".wait_timeout", "applies only with on_in_progress: \"wait\"")
		}
		return nil
	}
	r.WaitTimeout, err = duration(path+".wait_timeout", raw.WaitTimeout, min(DefaultWaitTimeout, r.Lease), time.Millisecond, r.Lease)
	return err
}

func (raw *rawMatch) build(path string) (RouteMatch, error) {
	m := RouteMatch{Path: raw.Path, Prefix: raw.Prefix, Glob: raw.Glob, Methods: slices.Clone(DefaultMethods)}
	if raw.Host != "" {
		h, err := validHost(raw.Host)
		if err != nil {
			return m, wrapField(path+".host", err)
		}
		m.Host = h
	}
	n := 0
	for _, f := range []struct{ name, v string }{{"path", raw.Path}, {"prefix", raw.Prefix}, {"glob", raw.Glob}} {
		if f.v == "" {
			continue
		}
		n++
		if !strings.HasPrefix(f.v, "/") {
			return m, fieldErr(path+"."+f.name, "must start with '/', got %q", f.v)
		}
		if strings.ContainsAny(f.v, "?#") && f.name != "glob" {
			return m, fieldErr(path+"."+f.name, "matches the path only; the query is ignored, so leave out '?' and '#'")
		}
		if err := checkPrintable(f.v); err != nil {
			return m, wrapField(path+"."+f.name, err)
		}
	}
	if n > 1 {
		return m, fieldErr(path, "want at most one of path, prefix and glob, got %d", n)
	}
	if m.Glob != "" {
		if err := validateGlob(m.Glob); err != nil {
			return m, wrapField(path+".glob", err)
		}
	}
	if raw.Methods != nil {
		if len(raw.Methods) == 0 {
			return m, fieldErr(path+".methods", "must not be empty; leave it out for the default %q", DefaultMethods)
		}
		for i, meth := range raw.Methods {
			p := fmt.Sprintf("%s.methods[%d]", path, i)
			if !canon.IsToken(meth) || strings.ToUpper(meth) != meth {
				return m, fieldErr(p, "want an upper-case method such as \"POST\", got %q", meth)
			}
			if slices.Contains(raw.Methods[:i], meth) {
				return m, fieldErr(p, "%q appears twice", meth)
			}
		}
		m.Methods = raw.Methods
	}
	return m, nil
}

// validHost checks a host pattern: a DNS name or IP literal without port,
// optionally starting with "*." (a suffix wildcard); returned in lower case.
func validHost(h string) (string, error) {
	name := strings.TrimPrefix(h, "*.")
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") && name == h {
		if strings.Trim(name[1:len(name)-1], "0123456789abcdefABCDEF:.") != "" {
			return "", fmt.Errorf("want an IPv6 literal such as [::1], got %q", h)
		}
		return strings.ToLower(h), nil
	}
	if name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return "", fmt.Errorf("want a host name such as api.example.com or *.example.com, got %q", h)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			continue
		}
		if c == ':' {
			return "", fmt.Errorf("leave out the port: the request's port is ignored (%q)", h)
		}
		return "", fmt.Errorf("%q is not allowed in a host (only a leading \"*.\" is a wildcard): %q", c, h)
	}
	return strings.ToLower(h), nil
}

func (raw *rawScope) build(path string) (Scope, error) {
	var s Scope
	if raw.Headers == nil && raw.Metadata == nil {
		return s, fieldErr(path, "needs headers, metadata or both")
	}
	if raw.Headers != nil {
		var err error
		if s.Headers, err = headerNames(path+".headers", raw.Headers); err != nil {
			return s, err
		}
	}
	if md := raw.Metadata; md != nil {
		p := path + ".metadata"
		if md.Filter == "" {
			return s, fieldErr(p+".filter", "required: the filter whose dynamic metadata holds the value, e.g. \"envoy.filters.http.jwt_authn\"")
		}
		if len(md.Path) == 0 {
			return s, fieldErr(p+".path", "required: the keys down to the value, e.g. [\"payload\", \"sub\"]")
		}
		for i, k := range md.Path {
			if k == "" {
				return s, fieldErr(fmt.Sprintf("%s.path[%d]", p, i), "must not be empty")
			}
		}
		s.Metadata = &MetadataScope{Filter: md.Filter, Path: md.Path}
	}
	switch {
	case raw.HMACKeyEnv != nil && raw.HMACKey != nil:
		return s, fieldErr(path+".hmac_key", "give hmac_key_env or hmac_key, not both")
	case raw.HMACKeyEnv != nil:
		if !validEnvName(*raw.HMACKeyEnv) {
			return s, fieldErr(path+".hmac_key_env", "want an environment variable name such as \"IDEMGATE_SCOPE_KEY\" (letters, digits, '_', not starting with a digit), got %q", *raw.HMACKeyEnv)
		}
		s.HMACKeyEnv = *raw.HMACKeyEnv
	case raw.HMACKey != nil:
		// The key itself never goes into an error message.
		if err := checkHMACKey(len(*raw.HMACKey)); err != nil {
			return s, wrapField(path+".hmac_key", err)
		}
		s.HMACKey = Secret(*raw.HMACKey)
	}
	return s, nil
}

func checkHMACKey(n int) error {
	if n == 0 {
		return fmt.Errorf("the key is empty")
	}
	if n < MinHMACKeyBytes {
		return fmt.Errorf("the key is %d bytes, want at least %d (e.g. `openssl rand -base64 48`)", n, MinHMACKeyBytes)
	}
	return nil
}

// validEnvName accepts a POSIX portable environment variable name.
func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ResolveEnv reads the secrets the configuration names by environment
// variable through lookup (os.LookupEnv in the filter: a standard-Go
// wasip1 module sees the variables Envoy's vm_config.environment_variables
// passes): control_plane.token_env, and the key of every scope that names
// hmac_key_env. A variable that is unset or empty, a token that is not
// visible ASCII, or a key shorter than MinHMACKeyBytes is an error naming
// the field (never the value); like Parse's, it wraps ErrInvalid. The
// filter calls it at plugin start, so a missing secret fails the start
// instead of silently calling without it or hashing without it.
func (c *Config) ResolveEnv(lookup func(string) (string, bool)) error {
	if name := c.ControlPlane.TokenEnv; name != "" {
		const path = "control_plane.token_env"
		v, ok := lookup(name)
		switch {
		case !ok:
			return fmt.Errorf("%w: %w", ErrInvalid, fieldErr(path, "environment variable %s is not set in the Wasm VM (pass it with vm_config.environment_variables)", name))
		case v == "":
			return fmt.Errorf("%w: %w", ErrInvalid, fieldErr(path, "environment variable %s is empty", name))
		}
		if err := checkPrintable(v); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, wrapField(path, fmt.Errorf("environment variable %s: %w", name, err)))
		}
		c.ControlPlane.Token = v
	}
	for i := range c.Routes {
		s := &c.Routes[i].Scope
		if s.HMACKeyEnv == "" {
			continue
		}
		path := fmt.Sprintf("routes[%d].scope.hmac_key_env", i)
		v, ok := lookup(s.HMACKeyEnv)
		if !ok {
			return fmt.Errorf("%w: %w", ErrInvalid, fieldErr(path, "environment variable %s is not set in the Wasm VM (pass it with vm_config.environment_variables)", s.HMACKeyEnv))
		}
		if err := checkHMACKey(len(v)); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, wrapField(path, fmt.Errorf("environment variable %s: %w", s.HMACKeyEnv, err)))
		}
		s.HMACKey = Secret(v)
	}
	return nil
}

func (raw *rawFingerprint) build(path string) (canon.Selection, error) {
	sel := canon.Selection{Include: raw.Include, Exclude: raw.Exclude}
	// One path at a time, so that the error names its index.
	for i, p := range raw.Include {
		if err := (canon.Selection{Include: []string{p}}).Validate(); err != nil {
			return sel, wrapField(fmt.Sprintf("%s.include[%d]", path, i), err)
		}
	}
	for i, p := range raw.Exclude {
		if err := (canon.Selection{Exclude: []string{p}}).Validate(); err != nil {
			return sel, wrapField(fmt.Sprintf("%s.exclude[%d]", path, i), err)
		}
	}
	if raw.Headers != nil {
		var err error
		if sel.Headers, err = headerNames(path+".headers", raw.Headers); err != nil {
			return sel, err
		}
	}
	// The whole selection once more, as the filter will use it.
	if err := sel.Validate(); err != nil {
		return sel, wrapField(path, err)
	}
	return sel, nil
}

// statuses builds the three outcome sets. Lists given must not overlap.
// A release or indeterminate list left out is its default less the
// statuses the given lists name, so that an explicit entry wins over a
// default (store_statuses: ["503"] stores 503 and keeps 502 and 504
// indeterminate). Every status no set holds is stored: the store set
// returned is the complement of the other two, whatever store_statuses
// names, because never releasing on what the policy does not name means
// never executing twice by accident.
func statuses(path string, raw *rawRoute) (store, release, indet StatusSet, err error) {
	lists := []struct {
		name    string
		entries []string
		set     StatusSet
	}{{name: "store_statuses", entries: raw.StoreStatuses}, {name: "release_statuses", entries: raw.ReleaseStatuses}, {name: "indeterminate_statuses", entries: raw.IndetStatuses}}
	var given StatusSet // every status a given list names
	for i := range lists {
		l := &lists[i]
		if l.entries == nil {
			continue
		}
		if len(l.entries) == 0 {
			return store, release, indet, fieldErr(path+"."+l.name, "must not be empty; leave it out for the default")
		}
		var at int
		if l.set, at, err = parseStatusSet(l.entries); err != nil {
			return store, release, indet, wrapField(fmt.Sprintf("%s.%s[%d]", path, l.name, at), err)
		}
		for _, o := range lists[:i] {
			if o.entries == nil {
				continue
			}
			if st := l.set.firstShared(&o.set); st != 0 {
				return store, release, indet, fieldErr(path+"."+l.name, "%d is also in %s; a status has one outcome", st, o.name)
			}
		}
		given = given.union(&l.set)
	}
	release, indet = lists[1].set, lists[2].set
	if lists[1].entries == nil {
		release = defaultRelease.without(&given)
	}
	if lists[2].entries == nil {
		indet = defaultIndeterminate.without(&given)
	}
	both := release.union(&indet)
	return both.complement(), release, indet, nil
}

func replayHeaders(path string, extra []string, setCookie bool) ([]string, error) {
	out := slices.Clone(DefaultReplayHeaders)
	if extra != nil {
		names, err := headerNames(path, extra)
		if err != nil {
			return nil, err
		}
		for i, n := range names {
			switch {
			case n == "set-cookie":
				return nil, fieldErr(fmt.Sprintf("%s[%d]", path, i), "set-cookie is replayed only with replay_set_cookie: true")
			case slices.Contains(neverReplayed, n):
				return nil, fieldErr(fmt.Sprintf("%s[%d]", path, i), "%s is never replayed (hop-by-hop, recomputed or the replay marker)", n)
			case !slices.Contains(out, n):
				out = append(out, n)
			}
		}
	}
	if setCookie {
		out = append(out, "set-cookie")
	}
	return out, nil
}

func headerNames(path string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, fieldErr(path, "must not be empty")
	}
	out := make([]string, len(names))
	for i, n := range names {
		var err error
		if out[i], err = headerName(fmt.Sprintf("%s[%d]", path, i), n); err != nil {
			return nil, err
		}
		if slices.Contains(out[:i], out[i]) {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", path, i), "%q appears twice", n)
		}
	}
	return out, nil
}

// headerName checks an HTTP field name and lowers it, as Envoy presents
// header names to the filter.
func headerName(path, n string) (string, error) {
	// A pseudo-header (":authority") is allowed, as canon allows it.
	if !canon.IsToken(strings.TrimPrefix(n, ":")) {
		return "", fieldErr(path, "want an HTTP header name, got %q", n)
	}
	return strings.ToLower(n), nil
}
