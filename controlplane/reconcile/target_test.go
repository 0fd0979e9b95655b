package reconcile

import (
	"strings"
	"testing"
	"time"
)

func TestParseTargetFlag(t *testing.T) {
	tests := []struct {
		in, name, tpl string
	}{
		{"http://pay/idem/{key}", "default", "http://pay/idem/{key}"},
		{"payments=http://pay/idem/{key}", "payments", "http://pay/idem/{key}"},
		// The '=' of a bare template's query is not a name separator.
		{"http://pay/idem?key={key}", "default", "http://pay/idem?key={key}"},
		{"orders=http://o/x?a={attempt}&b=1", "orders", "http://o/x?a={attempt}&b=1"},
		{"=http://x/{key}", "", "http://x/{key}"},
	}
	for _, tt := range tests {
		name, tpl := ParseTargetFlag(tt.in)
		if name != tt.name || tpl != tt.tpl {
			t.Errorf("ParseTargetFlag(%q) = %q, %q; want %q, %q", tt.in, name, tpl, tt.name, tt.tpl)
		}
	}
}

func TestValidateTemplate(t *testing.T) {
	tests := []struct {
		tpl     string
		wantErr string // "" = valid
	}{
		{"http://payments.internal/idempotency/{key}", ""},
		{"https://h:8443/__idempotency/{attempt}?scope={scope}", ""},
		{"http://h/x/{scope}/{key}/{attempt}", ""},
		{"", "empty"},
		{"http://h/idem/{scope}", "names neither {key} nor {attempt}"},
		{"http://h/idem/{Key}", "brace that is not one of the placeholders"},
		{"http://h/idem/{key", "brace that is not one of the placeholders"},
		{"ftp://h/{key}", "not an absolute http or https URL"},
		{"/idem/{key}", "not an absolute http or https URL"},
		{"http:///idem/{key}", "has no host"},
		{"http://{scope}.internal/{key}", "placeholder in its scheme or host"},
		{"http://user:secret@h/{key}", "user information"},
		{"http://h/{key}#frag", "fragment"},
		{"http://h/%zz/{key}", "is not a URL"},
	}
	for _, tt := range tests {
		err := ValidateTemplate(tt.tpl)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateTemplate(%q) = %v, want valid", tt.tpl, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidateTemplate(%q) = %v, want an error containing %q", tt.tpl, err, tt.wantErr)
		}
	}
}

func TestTargetURL(t *testing.T) {
	tests := []struct {
		tpl, key, attempt, scope, want string
	}{
		{"http://h/idem/{key}", "8e1f", "1.h", "s", "http://h/idem/8e1f"},
		// Path values are path-escaped: a '/' or '?' stays in its segment.
		{"http://h/idem/{key}", "a/b?c d", "1.h", "s", "http://h/idem/a%2Fb%3Fc%20d"},
		// Query values are query-escaped: '&' and '=' cannot add a parameter.
		{"http://h/idem?key={key}&a={attempt}", "x&admin=1", "2.h", "s", "http://h/idem?key=x%26admin%3D1&a=2.h"},
		// A segment of dots would name another resource once resolved.
		{"http://h/idem/{key}/status", "..", "1.h", "s", "http://h/idem/%2E%2E/status"},
		{"http://h/{scope}/{attempt}", "k", "3.abc_DEF-1", "tenant 7", "http://h/tenant%207/3.abc_DEF-1"},
	}
	for _, tt := range tests {
		got := Target{Template: tt.tpl}.URL(tt.key, tt.attempt, tt.scope)
		if got != tt.want {
			t.Errorf("%q with key %q: %q, want %q", tt.tpl, tt.key, got, tt.want)
		}
	}
}

func TestResolveTargets(t *testing.T) {
	env := map[string]string{
		"IDEMGATE_RECONCILE_TOKEN":                "default-secret",
		"IDEMGATE_RECONCILE_TOKEN_PAYMENTS_EU":    "eu-secret",
		"IDEMGATE_RECONCILE_TOKEN_ORDERS_UNUSED_": "x",
	}
	getenv := func(k string) string { return env[k] }
	got, err := ResolveTargets([]string{"http://p/{key}", "payments-eu=https://eu/{attempt}", "orders=http://o/{key}"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Name: "default", Template: "http://p/{key}", Credential: "default-secret"},
		{Name: "payments-eu", Template: "https://eu/{attempt}", Credential: "eu-secret"},
		{Name: "orders", Template: "http://o/{key}"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	errs := []struct {
		flags   []string
		wantErr string
	}{
		{[]string{"http://a/{key}", "http://b/{key}"}, `the target "default" is given twice`},
		{[]string{"pay ments=http://a/{key}"}, "byte outside [A-Za-z0-9_-]"},
		{[]string{"=http://a/{key}"}, "the target name is empty"},
		{[]string{strings.Repeat("n", 65) + "=http://a/{key}"}, "at most 64"},
		{[]string{"p=http://a/{scope}"}, "names neither {key} nor {attempt}"},
	}
	for _, tt := range errs {
		_, err := ResolveTargets(tt.flags, getenv)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "--reconcile-url") {
			t.Errorf("ResolveTargets(%q) = %v, want an error naming --reconcile-url and containing %q", tt.flags, err, tt.wantErr)
		}
	}
}

func TestCredentialEnv(t *testing.T) {
	for name, want := range map[string]string{
		"default":     "IDEMGATE_RECONCILE_TOKEN",
		"payments":    "IDEMGATE_RECONCILE_TOKEN_PAYMENTS",
		"payments-eu": "IDEMGATE_RECONCILE_TOKEN_PAYMENTS_EU",
	} {
		if got := CredentialEnv(name); got != want {
			t.Errorf("CredentialEnv(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempts int
		limit    time.Duration
		jitter   float64
		want     time.Duration
	}{
		{0, time.Minute, 0, time.Second},
		{1, time.Minute, 0, 2 * time.Second},
		{5, time.Minute, 0, 32 * time.Second},
		{6, time.Minute, 0, time.Minute},
		{1000, time.Minute, 0, time.Minute}, // no overflow
		{3, 5 * time.Second, 0, 5 * time.Second},
		{0, 300 * time.Millisecond, 0, 300 * time.Millisecond},
		// Jitter takes off up to a fifth.
		{1, time.Minute, 0.5, 1800 * time.Millisecond},
		{6, time.Minute, 0.999, time.Minute - time.Duration(0.999*float64(time.Minute)/5)},
	}
	for _, tt := range tests {
		if got := Backoff(tt.attempts, tt.limit, tt.jitter); got != tt.want {
			t.Errorf("Backoff(%d, %v, %v) = %v, want %v", tt.attempts, tt.limit, tt.jitter, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		ms    int64
		limit time.Duration
		want  time.Duration
	}{
		{1, time.Minute, MinRetryAfter},
		{100, time.Minute, 100 * time.Millisecond},
		{2500, time.Minute, 2500 * time.Millisecond},
		{3_600_000, time.Minute, time.Minute},
		{1 << 62, time.Minute, time.Minute}, // no overflow
		{50, 80 * time.Millisecond, 80 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.ms, tt.limit); got != tt.want {
			t.Errorf("RetryAfter(%d, %v) = %v, want %v", tt.ms, tt.limit, got, tt.want)
		}
	}
	// An answer without retry_after_ms backs off.
	if got := nextWait(2, 0, time.Minute); got < 3200*time.Millisecond || got > 4*time.Second {
		t.Errorf("nextWait(2, 0) = %v, want 4s less up to a fifth", got)
	}
	if got := nextWait(2, 700, time.Minute); got != 700*time.Millisecond {
		t.Errorf("nextWait(2, 700ms) = %v, want the upstream's 700ms", got)
	}
}
