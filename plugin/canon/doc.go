// Package canon computes the canonical form of JSON request bodies (RFC 8785,
// the JSON Canonicalization Scheme) and the request fingerprint that decides
// whether two requests carrying one Idempotency-Key are the same request.
//
// It is pure Go with no reflection and no encoding/json on the hot path, so
// that it runs inside Envoy as part of the Wasm filter; the idemctl CLI calls
// the same functions, so an operator computes exactly what the filter does.
//
// # Canonical JSON
//
// Append follows RFC 8785: no insignificant whitespace; object members
// sorted by the UTF-16 code units of their names; numbers as ECMAScript
// prints an IEEE-754 double (1e+30, 4.5, 0.002, 1e-7, -0 as 0); strings with
// only '"', '\' and control characters escaped (\b \t \n \f \r, else \u00xx
// in lowercase hex) and everything else as raw UTF-8. Documents that RFC 8785
// (via I-JSON, RFC 7493) does not admit are refused with an *Error naming
// the byte offset: invalid JSON, duplicate member names, invalid UTF-8, lone
// surrogates, NaN/Infinity, and numbers that overflow a double. Nesting
// deeper than MaxDepth is refused too. Numbers too small for a double round
// to 0, as in ECMAScript.
//
// # Fingerprint framing (version 2)
//
// Fingerprint hashes with SHA-256 the concatenation of these fields, each
// written as an 8-byte big-endian length followed by that many bytes, and
// prints "sha256:" and the digest in lowercase hex:
//
//  1. the constant "idemgate-fingerprint-v2";
//  2. the method, in upper case;
//  3. the host normalized by NormalizeHost (lower case, no trailing '.',
//     no default port :80 or :443, IPv6 brackets kept; empty when the
//     request names none), after the caller has mapped a host alias to
//     the host it stands for;
//  4. the request target (path and query) normalized by NormalizeTarget;
//  5. the selected headers: first the number of selected names (an 8-byte
//     big-endian integer, like every count below); then for each name, in
//     ascending byte order of its lower-case form and once each: the
//     lower-case name, the number of values the request carries for it
//     (0 when absent, so absent differs from empty) and each value with
//     surrounding spaces and tabs trimmed, in the order received;
//  6. the body kind: "json" or "raw";
//  7. the body: for "json", the canonical form of the body after the field
//     selection below; for "raw", the body bytes as received.
//
// The body is "json" when the Content-Type is application/json or any
// application/*+json (parameters and case ignored) and the body is not
// empty; otherwise it is "raw". A JSON body that fails canonicalization is
// an error, never silently hashed raw.
//
// The host counts so that one key on two APIs behind one gateway is two
// requests: the second is refused as a key reuse (422), never answered
// with the first API's response. Version 1 had no host; a record written
// under version 1 never matches a version-2 fingerprint, so a retry that
// crosses the upgrade is refused with 422 (never executed twice).
//
// Field selection applies to JSON bodies only. Paths use the syntax shared
// by gjson and sjson: member names separated by '.', array indexes as
// numbers, '\' escaping a '.' or other special character; wildcards,
// queries and modifiers are refused. When Include is not empty the body is
// first reduced to an object holding only the included paths that exist
// (nested as in the original, arrays padded with null up to an included
// index); then every Exclude path is deleted. The result is canonicalized.
package canon
