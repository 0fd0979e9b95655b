// Package frame writes (and matches) the length-prefixed framing of the
// filter's hash preimages and stored images: the fingerprint, the scope,
// the edge id and the request image an edge entry keeps. Each count is an
// 8-byte big-endian integer; each field is its length as a count followed
// by its bytes. Framing makes a sequence injective: two different
// sequences of fields and counts never frame to the same bytes, so what
// is hashed cannot be shifted from one field into another.
//
// The edge entry's own record (edgecache.go) frames its strings with
// shorter lengths (Field16, Field32): it is a bounded record read back
// field by field, not a preimage.
//
// The bytes are stored or compared across versions (fingerprints and
// scopes at the control plane, entries in shared data): a change here
// needs a new tag in every user.
package frame

import (
	"encoding/binary"
	"strings"
)

// CountLen is the size of a count, and of a field's length.
const CountLen = 8

// Count appends n as a count.
func Count(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

// Field appends f framed: its length, then its bytes.
func Field[T ~string | ~[]byte](b []byte, f T) []byte {
	return append(Count(b, len(f)), f...)
}

// Open appends the length of a field whose bytes are not known yet, and
// returns where those bytes start; Close(b, start) then sets the length
// to what b holds from start.
func Open(b []byte) ([]byte, int) {
	b = Count(b, 0)
	return b, len(b)
}

// Close sets the length of the field Open started at start to the bytes
// b holds after it.
func Close(b []byte, start int) {
	binary.BigEndian.PutUint64(b[start-CountLen:start], uint64(len(b)-start))
}

// CutCount reports whether b begins with the count n, and returns the
// rest of b.
func CutCount(b []byte, n int) ([]byte, bool) {
	if len(b) < CountLen || binary.BigEndian.Uint64(b) != uint64(n) {
		return b, false
	}
	return b[CountLen:], true
}

// CutField reports whether b begins with f framed, and returns the rest
// of b.
func CutField[T ~string | ~[]byte](b []byte, f T) ([]byte, bool) {
	rest, ok := CutCount(b, len(f))
	if !ok || len(rest) < len(f) || string(rest[:len(f)]) != string(f) {
		return b, false
	}
	return rest[len(f):], true
}

// Header appends a request header as the fingerprint and the scope frame
// it: its name as given, the number of values headers holds for it (names
// compared without regard to case; 0 when absent, so that absent differs
// from empty), then each value with surrounding spaces and tabs trimmed,
// in the order received. present reports whether a value is not empty
// once trimmed.
func Header(b []byte, headers [][2]string, name string) (_ []byte, present bool) {
	b = Field(b, name)
	n := 0
	for _, kv := range headers {
		if strings.EqualFold(kv[0], name) {
			n++
		}
	}
	b = Count(b, n)
	for _, kv := range headers {
		if strings.EqualFold(kv[0], name) {
			v := strings.Trim(kv[1], " \t")
			present = present || v != ""
			b = Field(b, v)
		}
	}
	return b, present
}

// Field16 appends f with a 2-byte big-endian length; false, with b
// unchanged, when f is longer than 0xffff bytes.
func Field16[T ~string | ~[]byte](b []byte, f T) ([]byte, bool) {
	if len(f) > 0xffff {
		return b, false
	}
	return append(binary.BigEndian.AppendUint16(b, uint16(len(f))), f...), true
}

// Field32 appends f with a 4-byte big-endian length; false, with b
// unchanged, when f is longer than 0xffffffff bytes.
func Field32[T ~string | ~[]byte](b []byte, f T) ([]byte, bool) {
	if uint64(len(f)) > 0xffffffff {
		return b, false
	}
	return append(binary.BigEndian.AppendUint32(b, uint32(len(f))), f...), true
}
