package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustNew(t *testing.T, k []byte, prev ...[]byte) *Sealer {
	t.Helper()
	s, err := New(k, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	s := mustNew(t, key(1))
	for _, tt := range []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty", nil, []byte("s\x00k")},
		{"json", []byte(`{"id":"pay_1","amount":100}`), []byte("tenant\x00k1")},
		{"binary", []byte{0, 1, 2, 0xff, 0xfe}, nil},
		{"large", bytes.Repeat([]byte("x"), 1<<20), []byte("s\x00k")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sealed := s.Seal(tt.plaintext, tt.aad)
			if got, want := len(sealed), len(tt.plaintext)+Overhead; got != want {
				t.Errorf("len(sealed) = %d, want %d", got, want)
			}
			if sealed[0] != Version {
				t.Errorf("version byte = %d, want %d", sealed[0], Version)
			}
			if len(tt.plaintext) > 8 && bytes.Contains(sealed, tt.plaintext[:8]) {
				t.Error("sealed body contains the plaintext")
			}
			got, err := s.Open(sealed, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	s := mustNew(t, key(1))
	a, b := s.Seal([]byte("same"), nil), s.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are equal: the nonce is not random")
	}
}

func TestOpenRejects(t *testing.T) {
	s := mustNew(t, key(1))
	aad := []byte("tenant\x00k1")
	sealed := s.Seal([]byte(`{"card":"4242"}`), aad)
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	for _, tt := range []struct {
		name   string
		opener *Sealer
		in     []byte
		aad    []byte
		want   error
	}{
		{"tampered ciphertext", s, flip(1 + NonceSize), aad, ErrOpen},
		{"tampered nonce", s, flip(1), aad, ErrOpen},
		{"tampered tag", s, flip(len(sealed) - 1), aad, ErrOpen},
		{"truncated", s, sealed[:len(sealed)-1], aad, ErrOpen},
		{"other record", s, sealed, []byte("tenant\x00k2"), ErrOpen},
		{"wrong key", mustNew(t, key(2)), sealed, aad, ErrOpen},
		{"unknown version", s, append([]byte{2}, sealed[1:]...), aad, ErrMalformed},
		{"too short", s, sealed[:Overhead-1], aad, ErrMalformed},
		{"plaintext stored before encryption", s, []byte(`{"id":"pay_1","amount":100,"currency":"eur"}`), aad, ErrMalformed},
		{"empty", s, nil, aad, ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opener.Open(tt.in, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %q, %v; want error %v", got, err, tt.want)
			}
			if got != nil {
				t.Errorf("Open returned %q with an error; want nil", got)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	old := mustNew(t, key(1))
	rotated := mustNew(t, key(2), key(1))
	aad := []byte("s\x00k")
	sealedOld := old.Seal([]byte("before"), aad)
	if got, err := rotated.Open(sealedOld, aad); err != nil || string(got) != "before" {
		t.Errorf("rotated.Open(old body) = %q, %v; want \"before\"", got, err)
	}
	sealedNew := rotated.Seal([]byte("after"), aad)
	if _, err := old.Open(sealedNew, aad); !errors.Is(err, ErrOpen) {
		t.Errorf("old.Open(new body) error = %v, want ErrOpen: new bodies use the first key", err)
	}
	if got, err := mustNew(t, key(2)).Open(sealedNew, aad); err != nil || string(got) != "after" {
		t.Errorf("Open with the new key alone = %q, %v", got, err)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  []byte
		prev [][]byte
	}{
		{"empty", nil, nil},
		{"AES-128", key(1)[:16], nil},
		{"33 bytes", append(key(1), 0), nil},
		{"bad previous", key(1), [][]byte{key(2)[:24]}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.key, tt.prev...); err == nil || !strings.Contains(err.Error(), "want 32") {
				t.Errorf("New = %v, want an error naming the length", err)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	k := key(7)
	k[0], k[1] = 0xfb, 0xff // characters that differ between the alphabets
	for _, tt := range []struct {
		name, in string
		wantErr  string
	}{
		{"standard", base64.StdEncoding.EncodeToString(k), ""},
		{"standard, no padding", base64.RawStdEncoding.EncodeToString(k), ""},
		{"URL", base64.URLEncoding.EncodeToString(k), ""},
		{"URL, no padding", base64.RawURLEncoding.EncodeToString(k), ""},
		{"trailing newline", base64.StdEncoding.EncodeToString(k) + "\n", ""},
		{"16 bytes", base64.StdEncoding.EncodeToString(k[:16]), "decodes to 16 bytes, want 32"},
		{"hex is not base64 of 32 bytes", strings.Repeat("ab", 32), "want 32"},
		{"garbage", "not*base64!", "not base64"},
		{"empty", "", "decodes to 0 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKey(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, k) {
				t.Fatalf("ParseKey(%q) = %x, %v; want %x", tt.in, got, err, k)
			}
		})
	}
}
