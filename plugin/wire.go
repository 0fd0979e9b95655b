package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/tidwall/gjson"
)

// The control-plane calls' JSON, written and read by hand: in the
// compiled module encoding/json's reflection costs tens of µs per call
// (issue 4's miss-path budget is 50 µs). The bytes are exactly what
// json.Marshal writes for the api types (wire_test.go compares them), so
// the control plane's strict decoding is unaffected.

func appendReserve(dst []byte, r *api.ReserveRequest) []byte {
	dst = append(dst, `{"scope":`...)
	dst = appendJSONString(dst, r.Scope)
	dst = append(dst, `,"key":`...)
	dst = appendJSONString(dst, r.Key)
	dst = append(dst, `,"fingerprint":`...)
	dst = appendJSONString(dst, r.Fingerprint)
	if r.LeaseMS != 0 {
		dst = append(dst, `,"lease_ms":`...)
		dst = strconv.AppendInt(dst, r.LeaseMS, 10)
	}
	if r.TTLMS != 0 {
		dst = append(dst, `,"ttl_ms":`...)
		dst = strconv.AppendInt(dst, r.TTLMS, 10)
	}
	if r.OnIndeterminate != "" {
		dst = append(dst, `,"on_indeterminate":`...)
		dst = appendJSONString(dst, r.OnIndeterminate)
	}
	if r.ReconcileTarget != "" {
		dst = append(dst, `,"reconcile_target":`...)
		dst = appendJSONString(dst, r.ReconcileTarget)
	}
	if r.Holder != "" {
		dst = append(dst, `,"holder":`...)
		dst = appendJSONString(dst, r.Holder)
	}
	return append(dst, '}')
}

func appendComplete(dst []byte, r *api.CompleteRequest) []byte {
	dst = append(dst, `{"scope":`...)
	dst = appendJSONString(dst, r.Scope)
	dst = append(dst, `,"key":`...)
	dst = appendJSONString(dst, r.Key)
	dst = append(dst, `,"token":`...)
	dst = appendJSONString(dst, r.Token)
	dst = append(dst, `,"response":{"status":`...)
	s := &r.Response
	dst = strconv.AppendInt(dst, int64(s.Status), 10)
	if len(s.Headers) > 0 {
		dst = append(dst, `,"headers":[`...)
		for i, kv := range s.Headers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			dst = appendJSONString(dst, kv[0])
			dst = append(dst, ',')
			dst = appendJSONString(dst, kv[1])
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	if len(s.Body) > 0 {
		dst = append(dst, `,"body":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, s.Body)
		dst = append(dst, '"')
	}
	if s.BodyOmitted {
		dst = append(dst, `,"body_omitted":true`...)
	}
	return append(dst, "}}"...)
}

// appendRelease writes release's body: by token, or by holder for a
// reservation whose answer the filter never saw (both omitted when empty,
// as json.Marshal does).
func appendRelease(dst []byte, scope, key, token, holder string) []byte {
	dst = append(dst, `{"scope":`...)
	dst = appendJSONString(dst, scope)
	dst = append(dst, `,"key":`...)
	dst = appendJSONString(dst, key)
	if token != "" {
		dst = append(dst, `,"token":`...)
		dst = appendJSONString(dst, token)
	}
	if holder != "" {
		dst = append(dst, `,"holder":`...)
		dst = appendJSONString(dst, holder)
	}
	return append(dst, '}')
}

// appendAbandon writes abandon's body.
func appendAbandon(dst []byte, scope, key, token string) []byte {
	dst = append(dst, `{"scope":`...)
	dst = appendJSONString(dst, scope)
	dst = append(dst, `,"key":`...)
	dst = appendJSONString(dst, key)
	dst = append(dst, `,"token":`...)
	dst = appendJSONString(dst, token)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// jsonPlain marks the ASCII bytes json.Marshal writes as they are: one
// lookup per byte instead of six comparisons (these strings are in every
// callout).
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString quotes s as json.Marshal does: HTML-sensitive <, >, &
// and control characters as \u00XX (or their short escapes), invalid
// UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	from := 0 // s[from:i] is still to be copied
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			dst = append(dst, s[from:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			from = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[from:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[from:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		from = i
	}
	dst = append(dst, s[from:]...)
	return append(dst, '"')
}

// decodeReserveResponse reads reserve's answer without reflection where
// the miss path needs it (outcome, token, lease); a stored response (a
// completed duplicate, not the hot path) goes through encoding/json and
// api.Headers' own decoder. Like json.Unmarshal into the struct, unknown
// members are ignored, names match case-insensitively and the last of
// duplicate members wins; a member of the wrong type is an error.
func decodeReserveResponse(body []byte) (api.ReserveResponse, error) {
	var rr api.ReserveResponse
	if !gjson.ValidBytes(body) {
		return rr, errors.New("invalid JSON")
	}
	top := gjson.ParseBytes(body)
	switch top.Type {
	case gjson.Null:
		return rr, nil // as json.Unmarshal: nothing set
	case gjson.JSON:
		if !top.IsObject() {
			return rr, errors.New("want a JSON object, got an array")
		}
	default:
		return rr, fmt.Errorf("want a JSON object, got %s", top.Type)
	}
	var err error
	top.ForEach(func(k, v gjson.Result) bool {
		name := k.Str
		switch {
		case strings.EqualFold(name, "outcome"):
			var s string
			if s, err = jsonStringMember(name, v); err == nil && v.Type != gjson.Null {
				rr.Outcome = api.Outcome(s)
			}
		case strings.EqualFold(name, "token"):
			var s string
			if s, err = jsonStringMember(name, v); err == nil && v.Type != gjson.Null {
				rr.Token = s
			}
		case strings.EqualFold(name, "lease_remaining_ms"):
			err = jsonIntMember(name, v, &rr.LeaseRemainingMS)
		case strings.EqualFold(name, "expires_in_ms"):
			err = jsonIntMember(name, v, &rr.ExpiresInMS)
		case strings.EqualFold(name, "reconcile_in_ms"):
			err = jsonIntMember(name, v, &rr.ReconcileInMS)
		case strings.EqualFold(name, "response"):
			switch {
			case v.Type == gjson.Null:
				rr.Response = nil
			case v.IsObject():
				var s api.StoredResponse
				if err = json.Unmarshal([]byte(v.Raw), &s); err != nil {
					err = fmt.Errorf("%s: %w", name, err)
				}
				rr.Response = &s
			default:
				err = fmt.Errorf("%s: want an object, got %s", name, v.Type)
			}
		}
		return err == nil
	})
	return rr, err
}

// jsonIntMember sets *dst to an integer member's value; null leaves it
// as it was, as json.Unmarshal does.
func jsonIntMember(name string, v gjson.Result, dst *int64) error {
	switch v.Type {
	case gjson.Null:
		return nil
	case gjson.Number:
		n, err := strconv.ParseInt(v.Raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*dst = n
		return nil
	}
	return fmt.Errorf("%s: want a number, got %s", name, v.Type)
}

// jsonStringMember returns a string member's value ("" for null: the
// caller then leaves the field as it was, as json.Unmarshal does).
func jsonStringMember(name string, v gjson.Result) (string, error) {
	switch v.Type {
	case gjson.String:
		return v.Str, nil
	case gjson.Null:
		return "", nil
	}
	return "", fmt.Errorf("%s: want a string, got %s", name, v.Type)
}
