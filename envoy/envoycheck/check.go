// Package envoycheck validates an Envoy v3 static bootstrap and flags what
// would break idempotency under the idemgate filter.
//
// The schema check decodes the YAML into Envoy's own API types
// (go-control-plane) with unknown fields rejected, runs their generated
// validation, and then does the same for every typed config inside a
// google.protobuf.Any, which the generated validation does not descend into.
// The idempotency checks read the idemgate filter's policy with the same
// parser the filter uses (plugin/policy), so they cannot disagree with it.
//
// Check is pure: it reads no files and keeps no state.
package envoycheck

import "fmt"

// Severity says whether a finding breaks the configuration (Error) or
// deserves a look (Warning).
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem, located by a path of proto field names as they
// are written in the YAML, e.g.
// static_resources.listeners[0].filter_chains[0].filters[0].typed_config.
type Finding struct {
	Severity Severity `json:"severity"`
	Rule     Rule     `json:"rule"`
	Path     string   `json:"path"`
	Message  string   `json:"message"`
}

func (f Finding) String() string {
	if f.Path == "" {
		return fmt.Sprintf("%s: %s", f.Severity, f.Message)
	}
	return fmt.Sprintf("%s: %s: %s", f.Path, f.Severity, f.Message)
}

// Rule names what a finding is about, for programs that read findings.
type Rule string

const (
	RuleYAML            Rule = "yaml"             // not YAML, or not a mapping: not a configuration at all
	RuleSchema          Rule = "schema"           // Envoy's API types refuse it
	RuleUnknownType     Rule = "unknown_type"     // a type URL this checker cannot resolve
	RulePolicy          Rule = "policy"           // the idemgate policy is invalid or not where it should be
	RuleRetry           Rule = "retry"            // Envoy would re-send governed traffic
	RuleBufferLimit     Rule = "buffer_limit"     // below the policy's max_body_bytes
	RuleResponseBuffer  Rule = "response_buffer"  // below the policy's max_stored_response_bytes
	RuleScopeMetadata   Rule = "scope_metadata"   // the scope's metadata is written by no filter before ours
	RuleCluster         Rule = "cluster"          // the control-plane cluster is missing or misconfigured
	RuleIdleTimeout     Rule = "idle_timeout"     // the control-plane cluster's idle timeout is too long
	RuleFilterOrder     Rule = "filter_order"     // the filter comes after the router
	RuleFailOpen        Rule = "fail_open"        // a failing VM would let governed traffic through
	RuleRouteTimeout    Rule = "route_timeout"    // the upstream may outlive the lease
	RuleNotGoverned     Rule = "not_governed"     // no idemgate filter, or one that cannot be checked
	RuleOtherWasm       Rule = "other_wasm"       // a wasm filter that is not idemgate's
	RuleRoutesUnchecked Rule = "routes_unchecked" // routes from RDS
	RuleRouteMetadata   Rule = "route_metadata"   // a route's idemgate metadata names no policy route
	RuleRouteName       Rule = "route_name"       // a policy match.route_name names no route
	RuleUnrouted        Rule = "unrouted"         // a policy route no Envoy route sends requests to
)

// HasErrors reports whether any finding is an Error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// Check validates one Envoy bootstrap in YAML (or JSON) and returns its
// findings, schema errors first; none means clean. A configuration that
// does not pass the schema is not checked further: its idempotency checks
// would read a half-decoded configuration.
func Check(yaml []byte) []Finding {
	bs, findings := decode(yaml)
	if bs == nil || HasErrors(findings) {
		return findings
	}
	return append(findings, checkIdempotency(bs)...)
}

// findings collects findings under a path prefix.
type findings []Finding

func (fs *findings) add(sev Severity, rule Rule, path, format string, args ...any) {
	*fs = append(*fs, Finding{Severity: sev, Rule: rule, Path: path, Message: fmt.Sprintf(format, args...)})
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// key is a map entry in a path: typed_per_filter_config["name"].
func key(path, k string) string {
	return fmt.Sprintf("%s[%q]", path, k)
}
