package policy

import (
	"errors"
	"fmt"
)

// KeyFormat says which spellings of the key header a route accepts.
type KeyFormat string

const (
	// KeyAny accepts an RFC 8941 sf-string ("k1", as the IETF draft
	// specifies) and a bare value (k1, as Stripe's SDKs send a UUID).
	// Both spellings of one key name the same key.
	KeyAny KeyFormat = "any"
	// KeySFString accepts only an RFC 8941 sf-string.
	KeySFString KeyFormat = "sf-string"
)

// Errors of ParseKey; each is wrapped with the detail, so match with
// errors.Is. All of them mean 400 for the client.
var (
	ErrKeyEmpty     = errors.New("idempotency key is empty")
	ErrKeyTooLong   = errors.New("idempotency key is too long")
	ErrKeyMalformed = errors.New("idempotency key is malformed")
)

// ParseKey returns the key carried by the raw header value. Spaces and tabs
// around the value are ignored (HTTP's OWS). An sf-string is a double-quoted
// run of printable ASCII where only \" and \\ are escapes; its unescaped
// content is the key. Parameters after an sf-string (RFC 8941 ;a=1) are
// refused: the draft gives them no meaning, and ignoring them silently would
// let "k1";x and "k1";y collide. A bare value, when format allows it, is
// visible ASCII with no whitespace and no quote, taken as is. maxLen bounds
// the key in bytes after unescaping; 0 or less means MaxKeyLength.
func ParseKey(raw string, format KeyFormat, maxLen int) (string, error) {
	if maxLen <= 0 || maxLen > MaxKeyLength {
		maxLen = MaxKeyLength
	}
	raw = trimOWS(raw)
	if raw == "" {
		return "", ErrKeyEmpty
	}
	if raw[0] == '"' {
		return parseSFString(raw, maxLen)
	}
	if format == KeySFString {
		return "", fmt.Errorf("%w: want an RFC 8941 string in double quotes", ErrKeyMalformed)
	}
	if len(raw) > maxLen {
		return "", fmt.Errorf("%w: %d bytes, more than %d", ErrKeyTooLong, len(raw), maxLen)
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == ' ' || c == '\t':
			return "", fmt.Errorf("%w: whitespace at byte %d", ErrKeyMalformed, i)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%w: control character at byte %d", ErrKeyMalformed, i)
		case c >= 0x80:
			return "", fmt.Errorf("%w: non-ASCII byte at %d", ErrKeyMalformed, i)
		case c == '"':
			return "", fmt.Errorf("%w: quote at byte %d in a bare value", ErrKeyMalformed, i)
		}
	}
	return raw, nil
}

func parseSFString(raw string, maxLen int) (string, error) {
	// The key is at most as long as the quoted form minus the quotes, so
	// most keys are returned as a substring without allocating.
	var buf []byte
	n := 0
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '"':
			if i != len(raw)-1 {
				return "", fmt.Errorf("%w: characters after the closing quote", ErrKeyMalformed)
			}
			if n == 0 {
				return "", ErrKeyEmpty
			}
			if buf == nil {
				return raw[1:i], nil
			}
			return string(buf), nil
		case c == '\\':
			i++
			if i == len(raw) || (raw[i] != '"' && raw[i] != '\\') {
				return "", fmt.Errorf("%w: at byte %d, only \\\" and \\\\ are escapes", ErrKeyMalformed, i-1)
			}
			if buf == nil {
				buf = append(make([]byte, 0, len(raw)), raw[1:i-1]...)
			}
			c = raw[i]
		case c < 0x20 || c >= 0x7f:
			return "", fmt.Errorf("%w: byte %d is not printable ASCII", ErrKeyMalformed, i)
		}
		if n++; n > maxLen {
			return "", fmt.Errorf("%w: more than %d bytes", ErrKeyTooLong, maxLen)
		}
		if buf != nil {
			buf = append(buf, c)
		}
	}
	return "", fmt.Errorf("%w: no closing quote", ErrKeyMalformed)
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
