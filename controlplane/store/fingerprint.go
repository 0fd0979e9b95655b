package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// What Redis keeps of a fingerprint: never the fingerprint itself, which
// together with the filter's token would let whoever reads Redis call
// reserve and be replayed the stored response. Instead:
//
//	"k1:" + hex(HMAC-SHA-256(key, fingerprint))   with a fingerprint key
//	"s1:" + hex(SHA-256(fingerprint))             without one
//
// Reserve computes the form from the fingerprint it is sent and compares
// forms. Without a key the hash still hides the fingerprint, but whoever
// reads Redis can test guesses of a request offline (a fingerprint over a
// guessable body is guessable); with a key they need the key too.
//
// Accepted beside the current form, so that no record in flight answers
// mismatch when the configuration changes:
//   - the forms under Options.PreviousFingerprintKeys (key rotation) and
//     the unkeyed "s1:" form (records written before a key was set);
//   - the fingerprint itself, for records written before hashing (they
//     carry no "k1:"/"s1:" mark): only such records compare in the clear,
//     so a hashed form read from Redis and sent as a fingerprint never
//     matches.
//
// A record that matches through any of these is rewritten in the current
// form. Records never touched again keep the old form until they expire
// (their TTL, at most api.MaxTTL; api.DefaultTTL by default).
const (
	fpKeyedMark   = "k1:"
	fpUnkeyedMark = "s1:"
)

// storedFingerprint is the form Redis keeps under key (nil: unkeyed).
func storedFingerprint(key []byte, fp string) string {
	if key == nil {
		sum := sha256.Sum256([]byte(fp))
		return fpUnkeyedMark + hex.EncodeToString(sum[:])
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(fp))
	return fpKeyedMark + hex.EncodeToString(m.Sum(nil))
}

// fingerprintForms is the current stored form of fp and the other forms a
// record may carry for the same fp (see above).
func (s *Store) fingerprintForms(fp string) (current string, others []string) {
	current = storedFingerprint(s.opt.FingerprintKey, fp)
	for _, k := range s.opt.PreviousFingerprintKeys {
		others = append(others, storedFingerprint(k, fp))
	}
	if s.opt.FingerprintKey != nil {
		others = append(others, storedFingerprint(nil, fp))
	}
	return current, others
}
