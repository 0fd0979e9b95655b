package api

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// The rules both sides enforce: the filter before it calls, the service
// (server and store) on what it is sent. One definition each, here,
// because the filter can import this package and nothing else of the
// control plane.

// Limits of the names a request carries, in bytes.
const (
	// MaxKeyLen bounds a scope and a key (ValidateName).
	MaxKeyLen = 255
	// MaxFingerprintLen bounds a fingerprint (ValidateFingerprint); real
	// ones are a hash, ~70 bytes.
	MaxFingerprintLen = 1024
	// MaxTokenLen bounds a fencing token (ValidateToken); the service's
	// are "<generation>.<holder id>", the id at most MaxHolderLen.
	MaxTokenLen = 128
)

// MaxTTL bounds a record's TTL, and so its lease: a route's ttl and lease
// in the filter, a reserve's ttl_ms in the store. Beyond bounding memory,
// it keeps now+TTL far inside what Redis's PEXPIRE accepts: a script that
// failed at PEXPIRE after its HSET would leave a record that never
// expires, because Redis does not roll a script back.
const MaxTTL = 366 * 24 * time.Hour

// ValidateName checks a scope or a key: 1 to MaxKeyLen bytes of valid
// UTF-8 with no control characters, so that it is safe in Redis keys, logs
// and headers. what names it in the error.
func ValidateName(what, s string) error { return validateText(what, s, MaxKeyLen) }

// ValidateFingerprint checks a reserve's fingerprint: the rule of
// ValidateName with MaxFingerprintLen.
func ValidateFingerprint(fp string) error {
	return validateText("fingerprint", fp, MaxFingerprintLen)
}

// ValidateToken checks a fencing token presented to complete, release or
// abandon: the rule of ValidateName with MaxTokenLen.
func ValidateToken(tok string) error { return validateText("token", tok, MaxTokenLen) }

// validateText: 1 to max bytes of valid UTF-8 with no C0 or C1 control
// character and no DEL.
func validateText(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long, more than %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%s has a control character at byte %d", what, i)
		}
	}
	return nil
}

// StoredSize is what a response counts against the cap on stored
// responses (the service's --max-stored-response, a route's
// max_stored_response_bytes): 3 for the status, plus the length of every
// header name and value, plus bodyLen. A response whose size is over the
// cap is stored as its status only (BodyOmitted); one at the cap is
// stored whole. The filter counts the headers first (bodyLen 0) and adds
// the body as it arrives.
func StoredSize(headers [][2]string, bodyLen int) int {
	n := 3 + bodyLen
	for _, kv := range headers {
		n += len(kv[0]) + len(kv[1])
	}
	return n
}
