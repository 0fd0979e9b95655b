package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
)

// trickyStrings are values whose JSON encoding has a special case.
var trickyStrings = []string{
	"", "plain", `quote " and backslash \`, "</script>&<>", "tab\tnl\nret\rbs\bff\f",
	"\x00\x01\x1f\x7f", "café ☕ 日本 😀", "line\u2028para\u2029", "bad utf8 \xff\xfe end",
	"truncated \xe2\x82", "\xc0\x80 overlong", "\ufffd replacement", "Bearer eyJhbGciOi.x_y-z",
	strings.Repeat("é\"", 200),
}

// calloutBodies are requests of every type the filter sends, with tricky
// values.
func calloutBodies() []any {
	var reqs []any
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	for i, s := range trickyStrings {
		other := trickyStrings[(i+1)%len(trickyStrings)]
		reqs = append(reqs,
			api.ReserveRequest{Scope: s, Key: other, Fingerprint: "sha256:" + s, LeaseMS: int64(i) * 1000, TTLMS: -int64(i)},
			api.ReserveRequest{Scope: s, Key: other, Fingerprint: "f", OnIndeterminate: s, Holder: other},
			api.ReserveRequest{Scope: s, Key: other, Fingerprint: "f", OnIndeterminate: api.LeaseReconcile, ReconcileTarget: s, Holder: other},
			api.ReserveRequest{Scope: s, Key: other, Fingerprint: "f", ReconcileTarget: other},
			api.ReleaseRequest{Scope: s, Key: other, Token: s + other},
			api.ReleaseRequest{Scope: s, Key: other, Holder: other},
			api.AbandonRequest{Scope: other, Key: s, Token: ""},
			api.CompleteRequest{Scope: s, Key: other, Token: "t" + s, Response: api.StoredResponse{
				Status: 200 + i, Headers: api.Headers{{s, other}, {"content-type", "application/json"}},
				Body: []byte(s), BodyOmitted: i%2 == 0,
			}},
		)
	}
	return append(reqs,
		api.ReserveRequest{},
		api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: 30000, TTLMS: 86400000},
		api.ReserveRequest{LeaseMS: -1 << 63, TTLMS: 1<<63 - 1},
		api.CompleteRequest{},
		api.CompleteRequest{Response: api.StoredResponse{Status: 201, Headers: api.Headers{}, Body: []byte{}}},
		api.CompleteRequest{Response: api.StoredResponse{Status: -5, Body: binary}},
		api.CompleteRequest{Response: api.StoredResponse{Status: 204, Body: []byte{0xff}, BodyOmitted: true}},
		api.CompleteRequest{Response: api.StoredResponse{Status: 200, Body: []byte{1, 2}}},    // base64 padding ==
		api.CompleteRequest{Response: api.StoredResponse{Status: 200, Body: []byte{1, 2, 3}}}, // no padding
		api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: 30000, TTLMS: 86400000, OnIndeterminate: api.LeaseRelease, Holder: "h0123456789abcdef_-"},
		api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", OnIndeterminate: api.LeaseLock},
		api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: 30000, TTLMS: 86400000, OnIndeterminate: api.LeaseReconcile, Holder: "h0123456789abcdef_-"},
		api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: 30000, TTLMS: 86400000, OnIndeterminate: api.LeaseReconcile, ReconcileTarget: "payments_v2-eu", Holder: "h0123456789abcdef_-"},
		api.ReserveRequest{Holder: "h"},
		api.ReleaseRequest{},
		api.ReleaseRequest{Scope: "s", Key: "k", Holder: "h0123456789abcdef"},
		api.ReleaseRequest{Scope: "s", Key: "k", Token: "t", Holder: "h"},
		api.AbandonRequest{Scope: "s", Key: "k", Token: "t"},
	)
}

// TestCalloutBodyMatchesEncodingJSON: the hand encoder writes exactly
// json.Marshal's bytes, and the control plane's strict decoding reads them
// back to the same value.
func TestCalloutBodyMatchesEncodingJSON(t *testing.T) {
	for i, req := range calloutBodies() {
		want, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got := appendCalloutBody([]byte("junk"), req)
		if !bytes.HasPrefix(got, []byte("junk")) {
			t.Fatalf("%d: dst not kept: %q", i, got)
		}
		got = got[len("junk"):]
		if !bytes.Equal(got, want) {
			t.Errorf("%d (%T):\n got %s\nwant %s", i, req, got, want)
			continue
		}
		back := reflect.New(reflect.TypeOf(req))
		dec := json.NewDecoder(bytes.NewReader(got))
		dec.DisallowUnknownFields()
		if err := dec.Decode(back.Interface()); err != nil {
			t.Errorf("%d: strict decode of %s: %v", i, got, err)
		}
	}
}

func FuzzCalloutBody(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s, []byte(s), int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, s string, body []byte, n int64) {
		for _, req := range []any{
			api.ReserveRequest{Scope: s, Key: s, Fingerprint: s, LeaseMS: n, TTLMS: -n},
			api.CompleteRequest{Scope: s, Key: s, Token: s, Response: api.StoredResponse{Status: int(n), Headers: api.Headers{{s, s}}, Body: body, BodyOmitted: n%2 == 0}},
			api.ReleaseRequest{Scope: s, Key: s, Token: s},
			api.ReleaseRequest{Scope: s, Key: s, Holder: s},
			api.ReserveRequest{Scope: s, Key: s, Fingerprint: s, OnIndeterminate: s, Holder: s},
			api.ReserveRequest{Scope: s, Key: s, Fingerprint: s, OnIndeterminate: s, ReconcileTarget: s, Holder: s},
		} {
			want, _ := json.Marshal(req)
			got := appendCalloutBody(nil, req)
			if !bytes.Equal(got, want) {
				t.Fatalf("%T:\n got %s\nwant %s", req, got, want)
			}
		}
	})
}

// TestDecodeReserveResponse: the gjson reader agrees with json.Unmarshal
// on the value, and on whether the answer is readable at all.
func TestDecodeReserveResponse(t *testing.T) {
	answers := []string{
		`{"outcome":"acquired","token":"t1"}`,
		`{"outcome":"in_progress","lease_remaining_ms":1500}`,
		`{"outcome":"mismatch"}`,
		`{"outcome":"completed","response":{"status":201,"headers":[["content-type","application/json"],["x","caf\u00e9 \"q\""]],"body":"eyJpZCI6MX0="}}`,
		`{"outcome":"completed","response":{"status":500,"body_omitted":true}}`,
		`{"outcome":"completed","response":null}`,
		`{"outcome":"acquired","token":"t\u00e9\n\"x\"","extra":[1,{"a":null}]}`,
		`{"Outcome":"acquired","TOKEN":"t2"}`,
		`{"outcome":"acquired","outcome":"mismatch"}`,
		`{"outcome":"acquired","token":"t","token":null}`,
		` { "outcome" : "acquired" , "token" : "t3" } `,
		`{}`, `null`,
		`{"outcome":"in_progress","lease_remaining_ms":-3}`,
		`{"outcome":"indeterminate","expires_in_ms":86379000}`,
		`{"outcome":"indeterminate","EXPIRES_IN_MS":5,"expires_in_ms":null}`,
		`{"outcome":"indeterminate","expires_in_ms":86379000,"reconcile_in_ms":1500}`,
		`{"outcome":"indeterminate","Reconcile_In_MS":7,"reconcile_in_ms":null}`,
		`{"outcome":"indeterminate","reconcile_in_ms":-1}`,
		// unreadable
		`not an object`, ``, `[]`, `"acquired"`, `42`, `{"outcome":"acquired"`,
		`{"outcome":1}`, `{"outcome":true}`, `{"token":["t"]}`,
		`{"lease_remaining_ms":1.5}`, `{"lease_remaining_ms":"15"}`, `{"lease_remaining_ms":1e3}`,
		`{"lease_remaining_ms":99999999999999999999}`,
		`{"expires_in_ms":"5"}`, `{"expires_in_ms":2.5}`,
		`{"reconcile_in_ms":"5"}`, `{"reconcile_in_ms":2.5}`, `{"reconcile_in_ms":true}`, `{"reconcile_in_ms":99999999999999999999}`,
		`{"outcome":"completed","response":[]}`, `{"outcome":"completed","response":"x"}`,
		`{"outcome":"completed","response":{"status":"201"}}`,
		`{"outcome":"completed","response":{"headers":[["a"]]}}`,
		`{"outcome":"completed","response":{"body":"not base64!"}}`,
	}
	for _, a := range answers {
		var want api.ReserveResponse
		wantErr := json.Unmarshal([]byte(a), &want)
		got, err := decodeReserveResponse([]byte(a))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json's %v", a, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", a, got, want)
		}
	}
}

// The benchmarks compare the hand encoder and reader with encoding/json;
// what matters is the compiled module:
//
//	GOOS=wasip1 GOARCH=wasm go test -exec "$PWD/build/wasip1-exec" -run '^$' -bench 'Body|DecodeReserve' ./plugin/
func benchBodies() (api.ReserveRequest, api.CompleteRequest) {
	body := []byte(strings.Repeat(`{"amount":12345,"currency":"EUR"}`, 31))
	return api.ReserveRequest{Scope: "hmac-sha256:3q2+7w", Key: "7f9c24e8-3b12-4fef-91e5-5ad3c2a1e6a4", Fingerprint: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", LeaseMS: 30000, TTLMS: 86400000},
		api.CompleteRequest{Scope: "hmac-sha256:3q2+7w", Key: "7f9c24e8-3b12-4fef-91e5-5ad3c2a1e6a4", Token: "tok_1", Response: api.StoredResponse{
			Status: 201, Headers: api.Headers{{"content-type", "application/json"}, {"location", "/payments/pay_1"}}, Body: body,
		}}
}

func BenchmarkReserveBody(b *testing.B) {
	r, _ := benchBodies()
	benchBody(b, r)
}

func BenchmarkCompleteBody(b *testing.B) {
	_, c := benchBodies()
	benchBody(b, c)
}

func benchBody(b *testing.B, req any) {
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(req)
		}
	})
	b.Run("hand", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendCalloutBody(buf[:0], req)
		}
	})
}

func BenchmarkDecodeReserve(b *testing.B) {
	answer := []byte(`{"outcome":"acquired","token":"tok_1"}`)
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var rr api.ReserveResponse
			_ = json.Unmarshal(answer, &rr)
		}
	})
	b.Run("gjson", func(b *testing.B) {
		for b.Loop() {
			_, _ = decodeReserveResponse(answer)
		}
	})
}

// appendCalloutBody appends the JSON of a control-plane request to dst
// through its hand encoder, so that the tests can compare every encoder
// with json.Marshal by the request's type. The filter calls the encoders
// directly; every request type it sends has one.
func appendCalloutBody(dst []byte, req any) []byte {
	switch r := req.(type) {
	case api.ReserveRequest:
		return appendReserve(dst, &r)
	case api.CompleteRequest:
		return appendComplete(dst, &r)
	case api.ReleaseRequest:
		return appendRelease(dst, r.Scope, r.Key, r.Token, r.Holder)
	case api.AbandonRequest:
		return appendAbandon(dst, r.Scope, r.Key, r.Token)
	}
	panic(fmt.Sprintf("no hand encoder for %T", req))
}
