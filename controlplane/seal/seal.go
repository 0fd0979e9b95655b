// Package seal encrypts stored response bodies at rest with AES-256-GCM.
//
// A sealed body is
//
//	version (1 byte, 0x01) | nonce (12 random bytes) | ciphertext | tag (16 bytes)
//
// and is authenticated together with additional data the caller chooses
// (the control plane binds it to the record's scope and key, so a body
// copied onto another record does not open). A Sealer seals with its first
// key and opens with any of its keys, so a key can be rotated: start with
// the new key first and the old one after it until the old records expire.
//
// Nonces are random: with one key, stay well under 2^32 seals (NIST SP
// 800-38D); rotate the key long before that.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

const (
	// Version is the first byte of every sealed body.
	Version byte = 1
	// KeySize is the length of a key: AES-256.
	KeySize = 32
	// NonceSize is the length of the random nonce.
	NonceSize = 12
	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = 1 + NonceSize + 16
)

var (
	// ErrMalformed: the input is too short or has an unknown version byte:
	// it was not produced by Seal (for example a body stored before
	// encryption was turned on).
	ErrMalformed = errors.New("seal: not a sealed body (too short or unknown version)")
	// ErrOpen: no key authenticates the input: it was sealed with a key this
	// Sealer does not hold (rotated away), for other additional data, or it
	// was tampered with.
	ErrOpen = errors.New("seal: cannot authenticate the sealed body (wrong key, other record, or tampered)")
)

// Sealer seals with its first key and opens with any of them. It is safe
// for concurrent use.
type Sealer struct {
	aeads []cipher.AEAD
}

// New returns a Sealer that seals with key and also opens with previous.
// Every key must be KeySize bytes.
func New(key []byte, previous ...[]byte) (*Sealer, error) {
	s := &Sealer{}
	for i, k := range append([][]byte{key}, previous...) {
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes, want %d (AES-256)", i, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		s.aeads = append(s.aeads, aead)
	}
	return s, nil
}

// ParseKey decodes a key given as base64 (standard or URL alphabet, with or
// without padding) and checks that it is KeySize bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var (
		b   []byte
		err error
	)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("not base64: %v", err)
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d (generate one with: openssl rand -base64 32)", len(b), KeySize)
	}
	return b, nil
}

// Seal encrypts plaintext bound to aad and returns a new slice of
// len(plaintext)+Overhead bytes.
func (s *Sealer) Seal(plaintext, aad []byte) []byte {
	out := make([]byte, 1+NonceSize, 1+NonceSize+len(plaintext)+16)
	out[0] = Version
	if _, err := rand.Read(out[1 : 1+NonceSize]); err != nil {
		// crypto/rand.Read does not fail on supported platforms (Go ≥ 1.24
		// crashes the program instead); a nonce must never be reused.
		panic("seal: no randomness: " + err.Error())
	}
	return s.aeads[0].Seal(out, out[1:1+NonceSize], plaintext, aad)
}

// Open authenticates and decrypts a body produced by Seal with the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead || sealed[0] != Version {
		return nil, ErrMalformed
	}
	nonce, ct := sealed[1:1+NonceSize], sealed[1+NonceSize:]
	for _, aead := range s.aeads {
		if pt, err := aead.Open(nil, nonce, ct, aad); err == nil {
			return pt, nil
		}
	}
	return nil, ErrOpen
}

// RecordAAD is the additional data a stored body is sealed with: its
// record's scope and key, so that a sealed body moved to another record
// does not open.
func RecordAAD(scope, key string) []byte { return []byte(scope + "\x00" + key) }
