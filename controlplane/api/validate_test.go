package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestValidateHolder(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string // substring; "" means valid
	}{
		{"min length", strings.Repeat("a", MinHolderLen), ""},
		{"max length", strings.Repeat("Z", MaxHolderLen), ""},
		{"every allowed class", "AZaz09-_AZaz09-_", ""},
		{"base32 nonce", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""},
		{"empty", "", "is empty"},
		{"too short", strings.Repeat("a", MinHolderLen-1), "want 16 to 64"},
		{"too long", strings.Repeat("a", MaxHolderLen+1), "want 16 to 64"},
		{"dot", "aaaaaaaa.aaaaaaaa", "byte 8"},
		{"space", "aaaaaaaa aaaaaaaa", "byte 8"},
		{"non-ASCII", "aaaaaaaaaaaaaaaé", "byte 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateHolder(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateHolder(%q) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateHolder(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestValidateStatus(t *testing.T) {
	tests := []struct {
		in int
		ok bool
	}{
		{99, false}, {100, true}, {200, true}, {599, true}, {600, true}, {999, true}, {1000, false}, {0, false}, {-200, false},
	}
	for _, tt := range tests {
		if err := ValidateStatus(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateStatus(%d) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestValidateOnIndeterminate(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"", true}, {LeaseLock, true}, {LeaseRelease, true}, {LeaseReconcile, true},
		{"Lock", false}, {"take_over", false}, {" release", false}, {"Reconcile", false},
	}
	for _, tt := range tests {
		if err := ValidateOnIndeterminate(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateOnIndeterminate(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestValidateReconcileTarget(t *testing.T) {
	tests := []struct {
		name, oi, target string
		wantErr          string // substring; "" means valid
	}{
		{"default target", LeaseReconcile, "", ""},
		{"no target, lock", LeaseLock, "", ""},
		{"no target, default policy", "", "", ""},
		{"named", LeaseReconcile, "payments_v2-eu", ""},
		{"max length", LeaseReconcile, strings.Repeat("t", MaxReconcileTargetLen), ""},
		{"too long", LeaseReconcile, strings.Repeat("t", MaxReconcileTargetLen+1), "more than 64"},
		{"dot", LeaseReconcile, "pay.ments", "byte 3"},
		{"space", LeaseReconcile, "pay ments", "byte 3"},
		{"non-ASCII", LeaseReconcile, "paé", "byte 2"},
		{"with lock", LeaseLock, "payments", "not \"reconcile\""},
		{"with release", LeaseRelease, "payments", "not \"reconcile\""},
		{"with the default policy", "", "payments", "not \"reconcile\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateReconcileTarget(tt.oi, tt.target)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateReconcileTarget(%q, %q) = %v, want nil", tt.oi, tt.target, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateReconcileTarget(%q, %q) = %v, want error containing %q", tt.oi, tt.target, err, tt.wantErr)
			}
		})
	}
}

func TestValidateReconcileAnswer(t *testing.T) {
	ok := &StoredResponse{Status: 201, Headers: Headers{{"Content-Type", "application/json"}}, Body: []byte(`{"id":1}`)}
	tests := []struct {
		name    string
		in      ReconcileAnswer
		wantErr string // substring; "" means valid
	}{
		{"executed", ReconcileAnswer{Outcome: ReconcileExecuted, Response: ok}, ""},
		{"executed, status 100", ReconcileAnswer{Outcome: ReconcileExecuted, Response: &StoredResponse{Status: 100}}, ""},
		{"executed, status 599", ReconcileAnswer{Outcome: ReconcileExecuted, Response: &StoredResponse{Status: 599}}, ""},
		{"not executed", ReconcileAnswer{Outcome: ReconcileNotExecuted}, ""},
		{"unknown", ReconcileAnswer{Outcome: ReconcileUnknown}, ""},
		{"unknown with retry after", ReconcileAnswer{Outcome: ReconcileUnknown, RetryAfterMS: 2500}, ""},
		{"missing outcome", ReconcileAnswer{}, "outcome is missing"},
		{"unknown outcome", ReconcileAnswer{Outcome: "ran"}, `outcome is "ran"`},
		{"outcome in capitals", ReconcileAnswer{Outcome: "EXECUTED", Response: ok}, `outcome is "EXECUTED"`},
		{"failed is not an answer", ReconcileAnswer{Outcome: ReconcileFailed}, `outcome is "failed"`},
		{"executed without response", ReconcileAnswer{Outcome: ReconcileExecuted}, "without a response"},
		{"executed, status 0", ReconcileAnswer{Outcome: ReconcileExecuted, Response: &StoredResponse{}}, "status 0"},
		{"executed, status 99", ReconcileAnswer{Outcome: ReconcileExecuted, Response: &StoredResponse{Status: 99}}, "status 99"},
		{"executed, status 600", ReconcileAnswer{Outcome: ReconcileExecuted, Response: &StoredResponse{Status: 600}}, "status 600"},
		{"executed, header with CRLF", ReconcileAnswer{Outcome: ReconcileExecuted,
			Response: &StoredResponse{Status: 200, Headers: Headers{{"X-A", "1\r\nX-B: 2"}}}}, "response.headers[0]"},
		{"executed, pseudo-header", ReconcileAnswer{Outcome: ReconcileExecuted,
			Response: &StoredResponse{Status: 200, Headers: Headers{{"X-A", "1"}, {":status", "200"}}}}, "response.headers[1]"},
		{"negative retry after", ReconcileAnswer{Outcome: ReconcileUnknown, RetryAfterMS: -1}, "retry_after_ms is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateReconcileAnswer(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateReconcileAnswer(%+v) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateReconcileAnswer(%+v) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

// TestReconcileWire pins the JSON names of the reconcile contract: the
// upstream implements them from the README, not from this package.
func TestReconcileWire(t *testing.T) {
	q := ReconcileQuery{Attempt: "1.h", Key: "k", Scope: "s", Fingerprint: "k1:ab",
		CreatedAt: time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC), DryRun: true}
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"attempt":"1.h","key":"k","scope":"s","fingerprint":"k1:ab","created_at":"2026-12-01T23:00:00Z","dry_run":true}`
	if string(b) != want {
		t.Errorf("query = %s\nwant    %s", b, want)
	}
	var a ReconcileAnswer
	in := `{"outcome":"executed","response":{"status":201,"headers":[["A","b"]],"body":"eyJpZCI6MX0="},"retry_after_ms":5}`
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	if a.Outcome != ReconcileExecuted || a.Response == nil || a.Response.Status != 201 ||
		string(a.Response.Body) != `{"id":1}` || len(a.Response.Headers) != 1 || a.RetryAfterMS != 5 {
		t.Errorf("answer decoded as %+v (response %+v)", a, a.Response)
	}
	b, err = json.Marshal(ReserveResponse{Outcome: Indeterminate, ExpiresInMS: 9, ReconcileInMS: 7})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"outcome":"indeterminate","expires_in_ms":9,"reconcile_in_ms":7}`; string(b) != want {
		t.Errorf("reserve response = %s, want %s", b, want)
	}
	b, err = json.Marshal(ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", OnIndeterminate: LeaseReconcile, ReconcileTarget: "pay"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"scope":"s","key":"k","fingerprint":"f","on_indeterminate":"reconcile","reconcile_target":"pay"}`; string(b) != want {
		t.Errorf("reserve request = %s, want %s", b, want)
	}
}

func TestCheckDuplicateMembers(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string // substring; "" means no duplicate found
	}{
		{"flat", `{"a":1,"b":2}`, ""},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":2}}`, ""},
		{"same name at two depths", `{"x":{"x":{"x":1}}}`, ""},
		{"arrays of objects", `[{"a":1},{"a":2}]`, ""},
		{"not JSON is not this check's business", `{"a":`, ""},
		{"top level", `{"a":1,"a":2}`, `duplicate member "a"`},
		{"nested", `{"response":{"status":200,"status":500}}`, `"response.status"`},
		{"in an array", `{"h":[{"n":1},{"n":1,"n":2}]}`, `"h[1].n"`},
		{"escaped spelling of the same name", `{"token":"a","tok\u0065n":"b"}`, `duplicate member "token"`},
		{"deep", strings.Repeat(`{"a":`, 50) + `{"b":1,"b":1}` + strings.Repeat(`}`, 50), `duplicate member`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDuplicateMembers([]byte(tt.in))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckDuplicateMembers(%s) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckDuplicateMembers(%s) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

// dupOracle is the slow, obvious check: encoding/json's tokenizer, one
// frame per container. CheckDuplicateMembers must agree with it on every
// valid document.
func dupOracle(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj   bool
		names map[string]bool
		path  string
		index int
		name  string
		key   bool
	}
	var stack []*frame
	elemPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.obj {
			if f.path == "" {
				return f.name
			}
			return f.path + "." + f.name
		}
		return f.path + "[" + strconv.Itoa(f.index) + "]"
	}
	done := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.obj {
			f.key = true
		} else {
			f.index++
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].key {
			top := stack[n-1]
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				done()
				continue
			}
			name := tok.(string)
			if top.names[name] {
				p := name
				if top.path != "" {
					p = top.path + "." + name
				}
				return fmt.Errorf("duplicate member %q in a JSON object", p)
			}
			top.names[name] = true
			top.name, top.key = name, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, names: map[string]bool{}, path: elemPath(), key: true})
		case json.Delim('['):
			stack = append(stack, &frame{path: elemPath()})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
		default:
			done()
		}
	}
}

var dupSeeds = []string{
	`{"a":1,"b":2}`, `{"a":1,"a":2}`, `{"x":{"x":{"x":1}}}`, `[{"a":1},{"a":2,"a":3}]`,
	`{"response":{"status":200,"headers":[["a","b"]],"status":500}}`, `{"tok\u0065n":1,"token":2}`,
	`{"a":"\"}\\","a":1}`, `{"":1,"":2}`, `[[[{"k":[1,{"k":2,"j":3,"k":4}]}]]]`, `"plain"`, `123`, `null`,
	`{"a":[],"b":{},"c":[{}],"a":0}`, `{"1":1,"2":2,"3":3,"4":4,"5":5,"6":6,"7":7,"8":8,"9":9,"10":10,"3":0}`,
	`{"é":1,"\u00e9":2}`, "{\"\xff\":1,\"\xfe\":2}", "{\"a\xffb\":1,\"a\ufffdb\":2}", `{"a" : { "b" : 1 , "b" : 2 } }`, `{"a":true,"b":false,"c":null,"d":-1.5e3,"b":1}`,
}

func TestCheckDuplicateMembersAgreesWithTokenizer(t *testing.T) {
	for _, in := range dupSeeds {
		if !json.Valid([]byte(in)) {
			t.Fatalf("seed %q is not valid JSON", in)
		}
		got, want := CheckDuplicateMembers([]byte(in)), dupOracle([]byte(in))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, the tokenizer says %v", in, got, want)
		}
	}
}

func FuzzCheckDuplicateMembers(f *testing.F) {
	for _, s := range dupSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := CheckDuplicateMembers(b) // must not panic on anything
		if !json.Valid(b) {
			return
		}
		if want := dupOracle(b); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q: got %v, the tokenizer says %v", b, got, want)
		}
	})
}

func BenchmarkCheckDuplicateMembers(b *testing.B) {
	body := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 1<<20)))
	complete := []byte(`{"scope":"tenant-7","key":"8e1f0c1a","token":"1.h7Qd2LkP0x9aVbN3cT5mWz","response":{"status":201,"headers":[["content-type","application/json"],["x-request-id","abc"]],"body":"` + body + `"}}`)
	reserve := []byte(`{"scope":"tenant-7","key":"8e1f0c1a","fingerprint":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","lease_ms":30000,"ttl_ms":86400000,"holder":"h7Qd2LkP0x9aVbN3cT5mWz","on_indeterminate":"lock"}`)
	for _, c := range []struct {
		name string
		in   []byte
	}{{"reserve", reserve}, {"complete-1MiB", complete}} {
		for _, impl := range []struct {
			name string
			fn   func([]byte) error
		}{{"scan", CheckDuplicateMembers}, {"tokenizer", dupOracle}} {
			b.Run(c.name+"/"+impl.name, func(b *testing.B) {
				b.SetBytes(int64(len(c.in)))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if err := impl.fn(c.in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
