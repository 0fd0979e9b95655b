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
// deeper than MaxDepth is refused too.
//
// # Exact numbers (a deviation from RFC 8785)
//
// RFC 8785 writes every number as its nearest double prints, so numbers
// that share a double share a canonical form: 1234567890123456789 and
// 1234567890123456790 both become 1234567890123456800, and two payments to
// different 64-bit account ids would carry one fingerprint. Append departs
// from RFC 8785 for exactly the numbers whose RFC 8785 form denotes another
// value than their own, and writes those with their own digits:
//
//   - A number is read as its exact decimal value: sign, significant digits
//     without leading or trailing zeros, and the place of the decimal
//     point, the exponent included ("1.50e+0003", "1500" and "15e2" are one
//     value; leading zeros of the exponent and its '+' count for nothing).
//   - If that value is zero (of any sign, digits or exponent) it is written
//     "0", as RFC 8785 does. Otherwise, if ECMAScript's shortest digits of
//     the nearest double, at their place, equal the number's own, the
//     RFC 8785 form is written: it denotes the same value.
//   - Otherwise (more digits than the double holds, a value between two
//     doubles, a value too small for a double, which RFC 8785 writes as 0)
//     the number's own digits are written, laid out by the rules ECMAScript
//     applies to a double's digits: with D the digits and n the place of
//     the decimal point counted from D's first digit, D followed by n-len(D)
//     zeros when len(D) <= n <= 21; D with a '.' after n digits when
//     0 < n <= 21; "0." then -n zeros then D when -6 < n <= 0; otherwise
//     D's first digit, then '.' and the rest of D when there is a rest, then
//     'e', '+' or '-', and n-1 in decimal without leading zeros (its digits
//     are exact whatever their count). A negative value gets a leading '-'.
//     Examples: 9007199254740993 stays 9007199254740993 (RFC 8785:
//     9007199254740992); 333333333.33333329 stays so (RFC 8785:
//     333333333.3333333); 1234567890123456789012 becomes
//     1.234567890123456789012e+21; 0.00000012345678901234567890 becomes
//     1.234567890123456789e-7; 1e-400 stays 1e-400 (RFC 8785: 0).
//
// Every canonical number thus denotes its input's exact value, so two
// numbers get one form exactly when they are equal, and the form is a fixed
// point of Append. Documents without such numbers, which are nearly all of
// them, are byte for byte RFC 8785's (FuzzDifferential compares them with
// github.com/gowebpki/jcs), and so is every number of at most 15
// significant digits within a double's normal range (1e-307 to 1e308 in
// magnitude). Numbers that overflow a double are still refused.
// AppendReport names the numbers the deviation wrote; `idemctl canon` says
// so on standard error.
//
// # Fingerprint framing (version 2)
//
// Fingerprint hashes with SHA-256 the concatenation of these fields, each
// written as an 8-byte big-endian length followed by that many bytes (the
// framing of package frame, which the scope and the edge cache share), and
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
