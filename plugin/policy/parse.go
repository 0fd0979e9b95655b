package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Parse reads and validates the plugin configuration. Every error wraps
// ErrInvalid and, when it concerns one field, a *FieldError naming it.
// An empty configuration is an error: a filter that governs no route is a
// misconfiguration, not a no-op.
func Parse(data []byte) (*Config, error) {
	c, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

func parse(data []byte) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the configuration is empty; it needs control_plane and at least one route")
	}
	// encoding/json would replace invalid UTF-8 silently; names and header
	// values must arrive as written.
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("not UTF-8 at byte %d", invalidUTF8At(data))
	}
	// encoding/json's scanner is not recursive, so hostile nesting cannot
	// exhaust the Wasm stack; its error says where the syntax breaks.
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not JSON: %w (at byte %d)", err, se.Offset)
		}
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if err := checkShape(gjson.ParseBytes(data), reflect.TypeFor[rawConfig](), ""); err != nil {
		return nil, err
	}
	var raw rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decoding: %w", err) // checkShape should have caught it
	}
	return raw.build()
}

func (raw *rawConfig) build() (*Config, error) {
	if raw.ControlPlane == nil {
		return nil, fieldErr("control_plane", "required")
	}
	cp, err := raw.ControlPlane.build("control_plane")
	if err != nil {
		return nil, err
	}
	if len(raw.Routes) == 0 {
		return nil, fieldErr("routes", "at least one route is required")
	}
	c := &Config{ControlPlane: cp, Routes: make([]Route, len(raw.Routes)), EdgeCacheSlots: DefaultEdgeCacheSlots, MaxHeldBytes: DefaultMaxHeldBytes}
	if n := raw.MaxHeld; n != nil {
		if *n < MinMaxHeldBytes || *n > MaxMaxHeldBytes {
			return nil, fieldErr("max_held_bytes", "must be %d (64 KiB) to %d (1 GiB), got %d", MinMaxHeldBytes, MaxMaxHeldBytes, *n)
		}
		c.MaxHeldBytes = int(*n)
	}
	if n := raw.EdgeSlots; n != nil {
		if *n < 0 || *n > MaxEdgeCacheSlots {
			return nil, fieldErr("edge_cache_slots", "must be 0 (off) to %d, got %d", MaxEdgeCacheSlots, *n)
		}
		c.EdgeCacheSlots = int(*n)
	}
	for i := range raw.Routes {
		if c.Routes[i], err = raw.Routes[i].build(fmt.Sprintf("routes[%d]", i)); err != nil {
			return nil, err
		}
	}
	if err := checkRouteNames(c.Routes); err != nil {
		return nil, err
	}
	return c, nil
}

func (raw *rawControlPlane) build(path string) (ControlPlane, error) {
	cp := ControlPlane{Cluster: raw.Cluster, Authority: raw.Authority, Token: raw.Token, InsecureNoAuth: raw.InsecureNoAuth}
	if cp.Cluster == "" {
		return cp, fieldErr(path+".cluster", "required: the Envoy cluster of the control plane")
	}
	if err := checkPrintable(cp.Cluster); err != nil {
		return cp, wrapField(path+".cluster", err)
	}
	if cp.Authority == "" {
		return cp, fieldErr(path+".authority", "required: the host the callouts name in :authority")
	}
	if strings.ContainsAny(cp.Authority, "/?#@ ") {
		return cp, fieldErr(path+".authority", "want host or host:port, got %q", cp.Authority)
	}
	if err := checkPrintable(cp.Authority); err != nil {
		return cp, wrapField(path+".authority", err)
	}
	if raw.TokenEnv != nil {
		if !validEnvName(*raw.TokenEnv) {
			return cp, fieldErr(path+".token_env", "want an environment variable name such as \"IDEMGATE_FILTER_TOKEN\" (letters, digits, '_', not starting with a digit), got %q", *raw.TokenEnv)
		}
		cp.TokenEnv = *raw.TokenEnv
	}
	// Exactly one way to authenticate, so that a token left in the route
	// configuration next to token_env is not silently used or ignored.
	n := 0
	for _, set := range []bool{cp.Token != "", cp.TokenEnv != "", cp.InsecureNoAuth} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return cp, fieldErr(path+".token", "required: give token_env (the token from the Wasm VM's environment), token, or insecure_no_auth: true for a local demo")
	case n > 1 && cp.InsecureNoAuth:
		return cp, fieldErr(path+".insecure_no_auth", "contradicts the token that is set")
	case n > 1:
		return cp, fieldErr(path+".token", "give token_env or token, not both")
	case cp.Token != "":
		// It goes into a header: a CR or LF would split it.
		if err := checkPrintable(cp.Token); err != nil {
			return cp, wrapField(path+".token", err)
		}
	}
	var err error
	if cp.Timeout, err = duration(path+".timeout", raw.Timeout, DefaultTimeout, time.Millisecond, MaxTimeout); err != nil {
		return cp, err
	}
	return cp, nil
}

// duration parses a Go duration string ("250ms", "24h"), applies def when
// it is left out, and checks lo ≤ d ≤ hi.
func duration(path string, s *string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == nil {
		return def, nil
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		return 0, fieldErr(path, "want a duration such as \"250ms\", \"30s\" or \"24h\", got %q", *s)
	}
	if d < lo || d > hi {
		return 0, fieldErr(path, "%v is outside %v to %v", d, lo, hi)
	}
	return d, nil
}

// checkPrintable refuses what cannot go into a header or a log line whole.
func checkPrintable(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("byte %d is not visible ASCII", i)
		}
	}
	return nil
}

// oneOf returns the value of an enumerated field, or def when left out.
func oneOf[T ~string](path string, s *string, def T, allowed ...T) (T, error) {
	if s == nil {
		return def, nil
	}
	for _, a := range allowed {
		if string(a) == *s {
			return a, nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = fmt.Sprintf("%q", a)
	}
	return def, fieldErr(path, "want %s, got %q", strings.Join(names, " or "), *s)
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
