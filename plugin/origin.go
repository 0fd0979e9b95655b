package main

import "strings"

// origin says who produced the response a filter sees in its response
// callbacks. Envoy runs its own answers through them too: the router's
// 503 after an upstream reset, its 504 after a route timeout, another
// filter's 403. Storing such an answer would replay Envoy's error for
// TTL; releasing the key after one that may have followed an execution
// would let a retry execute twice.
type origin int

const (
	// fromUpstream: the upstream answered ("via_upstream"), or the host
	// does not say (no response.code_details property).
	fromUpstream origin = iota
	// notSent: Envoy answered and the request cannot have reached the
	// upstream (no connection, no route, circuit breaker, a filter's
	// rejection): the key may be released.
	notSent
	// indeterminate: Envoy answered after the request may have reached
	// the upstream (reset, timeout): the operation may have run.
	indeterminate
)

// notSentDetails are fragments of Envoy's response code details that
// mean the request never reached an upstream. Anything else that is not
// via_upstream is indeterminate: when in doubt, do not release.
//
// This holds only without router retries: the details describe the last
// attempt, and with a retry_policy an earlier attempt may have reached the
// upstream before a later one failed to connect. Governed routes must not
// retry (idemctl check-envoy flags it) for that reason among others.
var notSentDetails = []string{
	"connection_failure", // upstream_reset_before_response_started{connection_failure} and its remote_/local_ variants
	"overflow",           // circuit breaker: no connection or request slot
	"no_healthy_upstream",
	"cluster_not_found",
	"route_not_found",
	"maintenance_mode",
	"request_payload_too_large",
	"direct_response",
	"rbac_access_denied",
	"ext_authz_denied",
	"ext_authz_error",
	"local_rate_limited",
	"request_rate_limited",
	"jwt_authn_access_denied",
	"missing_host_header",
}

// responseOrigin classifies Envoy's response code details.
func responseOrigin(details string) origin {
	if details == "" || details == "via_upstream" {
		return fromUpstream
	}
	for _, s := range notSentDetails {
		if strings.Contains(details, s) {
			return notSent
		}
	}
	return indeterminate
}
