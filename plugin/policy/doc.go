// Package policy is the per-route idempotency policy of the Wasm filter:
// it parses and validates the plugin configuration (JSON, Envoy's
// `configuration` StringValue), matches a request to a route, parses the
// Idempotency-Key header and classifies upstream responses.
//
// It is pure Go with no network code, so that it builds for wasip1 inside
// the filter; it runs once at plugin start (Parse) and per request (Match,
// ParseKey, Classify), the latter without reflection or allocation on the
// common path.
package policy
