package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// TestFingerprintAtRest: Redis keeps a keyed hash of the fingerprint, never
// the fingerprint, so what Redis holds cannot be sent back as a fingerprint
// to be replayed the stored body. Records written before (the fingerprint
// in the clear), under a previous key, or unkeyed still match the
// fingerprint they were written for, and are rewritten in the current form.
func TestFingerprintAtRest(t *testing.T) {
	srv := newServer(t)
	key1, key2 := []byte("0123456789abcdef-key-one"), []byte("0123456789abcdef-key-two")
	unkeyed := srv.store(Options{})
	s1 := srv.store(Options{FingerprintKey: key1})
	s2 := srv.store(Options{FingerprintKey: key2, PreviousFingerprintKeys: [][]byte{key1}})
	s2only := srv.store(Options{FingerprintKey: key2})
	const fp = "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	ctx := testCtx(t)

	complete := func(t *testing.T, s *Store, key string) {
		t.Helper()
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: fp})
		if err != nil || r.Outcome != api.Acquired {
			t.Fatalf("reserve: %+v %v", r, err)
		}
		if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: key, Token: r.Token, Response: responseFor(201)}); err != nil {
			t.Fatal(err)
		}
	}
	storedFP := func(t *testing.T, key string) string {
		t.Helper()
		v, err := unkeyed.c.HGet(ctx, unkeyed.RecordKey("s", key), "fp").Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	reserve := func(t *testing.T, s *Store, key, fingerprint string, want api.Outcome) {
		t.Helper()
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: fingerprint})
		if err != nil || r.Outcome != want {
			t.Fatalf("reserve with %q: %+v %v, want %s", fingerprint, r, err, want)
		}
	}

	t.Run("keyed: Redis holds the HMAC, not the fingerprint", func(t *testing.T) {
		complete(t, s1, "keyed")
		got := storedFP(t, "keyed")
		if strings.Contains(got, fp[len("sha256:"):]) || got != storedFingerprint(key1, fp) || !strings.HasPrefix(got, "k1:") {
			t.Fatalf("stored %q, want the HMAC form %q", got, storedFingerprint(key1, fp))
		}
		// What Redis holds, sent as a fingerprint, opens nothing.
		reserve(t, s1, "keyed", got, api.Mismatch)
		reserve(t, s1, "keyed", fp, api.Completed)
		rec, err := s1.Get(ctx, "s", "keyed", false)
		if err != nil || rec.Fingerprint != got {
			t.Fatalf("admin view %+v %v, want the stored form", rec, err)
		}
	})
	t.Run("unkeyed: SHA-256, and its form is no fingerprint either", func(t *testing.T) {
		complete(t, unkeyed, "unkeyed")
		got := storedFP(t, "unkeyed")
		if got != storedFingerprint(nil, fp) || !strings.HasPrefix(got, "s1:") {
			t.Fatalf("stored %q, want %q", got, storedFingerprint(nil, fp))
		}
		reserve(t, unkeyed, "unkeyed", got, api.Mismatch)
		reserve(t, unkeyed, "unkeyed", fp, api.Completed)
	})
	t.Run("a key set later still matches unkeyed records, and rewrites them", func(t *testing.T) {
		complete(t, unkeyed, "then-keyed")
		reserve(t, s1, "then-keyed", fp, api.Completed)
		if got := storedFP(t, "then-keyed"); got != storedFingerprint(key1, fp) {
			t.Fatalf("stored %q after a keyed reserve, want the keyed form", got)
		}
	})
	t.Run("rotation: the previous key still matches, and the record moves to the new one", func(t *testing.T) {
		complete(t, s1, "rotated")
		reserve(t, s2only, "rotated", fp, api.Mismatch) // without the previous key: another fingerprint
		reserve(t, s2, "rotated", fp, api.Completed)
		if got := storedFP(t, "rotated"); got != storedFingerprint(key2, fp) {
			t.Fatalf("stored %q, want the new key's form", got)
		}
		reserve(t, s2only, "rotated", fp, api.Completed)
	})

	// Records as the version before hashing wrote them: the fingerprint in
	// the clear. In flight at the upgrade, they must neither answer
	// mismatch nor run twice.
	legacy := func(t *testing.T, key string, fields ...any) {
		t.Helper()
		rk := unkeyed.RecordKey("s", key)
		if err := unkeyed.c.HSet(ctx, rk, fields...).Err(); err != nil {
			t.Fatal(err)
		}
		if err := unkeyed.c.PExpire(ctx, rk, api.DefaultTTL).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("legacy completed record replays and is rewritten", func(t *testing.T) {
		legacy(t, "legacy-done", "st", "c", "fp", fp, "gen", 1, "tok", "1.OLDNONCE", "cr", 1, "exp", 2, "ttl", 60_000,
			"code", 201, "hdr", `[["Content-Type","application/json"],["X-Id","201"]]`, "body", `{"status":201}`, "omit", "")
		reserve(t, s1, "legacy-done", "sha256:other", api.Mismatch)
		reserve(t, s1, "legacy-done", fp, api.Completed)
		if got := storedFP(t, "legacy-done"); got != storedFingerprint(key1, fp) {
			t.Fatalf("stored %q, want the keyed form after first use", got)
		}
	})
	t.Run("legacy in-progress record stays held, its token completes", func(t *testing.T) {
		legacy(t, "legacy-held", "st", "p", "fp", fp, "gen", 1, "tok", "1.OLDNONCE", "lease", "99999999999999", "cr", 1, "exp", 2, "ttl", 60_000)
		reserve(t, s1, "legacy-held", fp, api.InProgress)
		if err := s1.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "legacy-held", Token: "1.OLDNONCE", Response: responseFor(201)}); err != nil {
			t.Fatalf("the old holder's complete: %v", err)
		}
		reserve(t, s1, "legacy-held", fp, api.Completed)
	})
	t.Run("legacy record whose lease ended locks (no on_indeterminate field)", func(t *testing.T) {
		legacy(t, "legacy-expired", "st", "p", "fp", fp, "gen", 1, "tok", "1.OLDNONCE", "lease", "1", "cr", 1, "exp", 2, "ttl", 60_000)
		r, err := s1.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "legacy-expired", Fingerprint: fp})
		if !errors.Is(err, ErrLeaseEnded) || r.Outcome != api.Indeterminate {
			t.Fatalf("reserve: %+v %v, want indeterminate with ErrLeaseEnded", r, err)
		}
		reserve(t, s1, "legacy-expired", fp, api.Indeterminate)
	})
	t.Run("a hashed form never compares in the clear", func(t *testing.T) {
		// A marked record compares with hashed forms only: sending the
		// stored form as the fingerprint is not the legacy path.
		complete(t, s1, "marked")
		reserve(t, s2only, "marked", storedFP(t, "marked"), api.Mismatch)
	})
}

// TestFenceExpires: a fence stands for FenceTTL, then the holder is a
// stranger again.
func TestFenceExpires(t *testing.T) {
	srv := newServer(t)
	s := srv.store(Options{FenceTTL: 2 * time.Second})
	ctx := testCtx(t)
	h := holderID("hF")
	if _, err := s.ReleaseHolder(ctx, "s", "fenced", h); err != nil {
		t.Fatal(err)
	}
	pttl, err := s.c.PTTL(ctx, s.fenceKey("s", "fenced", h)).Result()
	if err != nil || pttl <= 0 || pttl > 2*time.Second {
		t.Fatalf("fence PTTL %v %v, want (0, 2s]", pttl, err)
	}
	if _, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "fenced", Fingerprint: "A", Holder: h}); !errors.Is(err, ErrFenced) {
		t.Fatalf("reserve inside the fence: %v, want ErrFenced", err)
	}
	pollFor(t, "the fence to expire", func() bool {
		n, err := s.c.Exists(ctx, s.fenceKey("s", "fenced", h)).Result()
		return err == nil && n == 0
	})
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "fenced", Fingerprint: "A", Holder: h})
	if err != nil || r.Outcome != api.Acquired {
		t.Fatalf("reserve after the fence: %+v %v, want acquired", r, err)
	}
}

func TestFingerprintKeyOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		ok   bool
	}{
		{"none", Options{}, true},
		{"16 bytes", Options{FingerprintKey: make([]byte, 16)}, true},
		{"short key", Options{FingerprintKey: make([]byte, 15)}, false},
		{"short previous key", Options{FingerprintKey: make([]byte, 32), PreviousFingerprintKeys: [][]byte{make([]byte, 8)}}, false},
		{"negative fence", Options{FenceTTL: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.opt.Validate(); (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidOptions)) {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
