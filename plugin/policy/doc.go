// Package policy is the per-route idempotency policy of the Wasm filter:
// it parses and validates the plugin configuration (JSON, Envoy's
// `configuration` StringValue), picks the route that governs a request,
// parses the Idempotency-Key header and classifies upstream responses.
//
// Parse runs once, at plugin start. It is strict — unknown, duplicate or
// mistyped fields are errors naming the field's path — because a typo must
// never silently disable idempotency. It applies the defaults listed in
// README.md and schema.json, and validates everything the filter later
// relies on, so that Match, ParseKey and Classify, which run per request,
// have nothing left to check.
//
// The package is pure Go without network code, so that it builds for wasip1
// inside the filter.
package policy
