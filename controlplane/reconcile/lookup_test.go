package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// query is the lookup every client test sends.
var query = api.ReconcileQuery{
	Attempt:     "7.h7Qd2LkP0x9aVbN3cT5mWz",
	Key:         "8e1f/0c1a",
	Scope:       "tenant-7",
	Fingerprint: "s1:abcd",
	CreatedAt:   time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC),
}

// TestLookup: only an HTTP 200 carrying exactly one valid answer is an
// answer; everything else is a *LookupError (a failed lookup, which the
// reconciler never reads as not executed).
func TestLookup(t *testing.T) {
	const executed = `{"outcome":"executed","response":{"status":201,"headers":[["content-type","application/json"]],"body":"eyJpZCI6InBheV8xIn0="}}`
	tests := []struct {
		name    string
		status  int
		body    string
		hang    bool   // never answer: the lookup times out
		header  string // a response header "Name: value" to set
		want    string // the answer's outcome; "" = a failed lookup
		wantErr string
	}{
		{name: "executed", status: 200, body: executed, want: api.ReconcileExecuted},
		{name: "not executed", status: 200, body: `{"outcome":"not_executed"}`, want: api.ReconcileNotExecuted},
		{name: "unknown", status: 200, body: `{"outcome":"unknown","retry_after_ms":2500}`, want: api.ReconcileUnknown},
		{name: "unknown outcome", status: 200, body: `{"outcome":"maybe"}`, wantErr: "malformed answer"},
		{name: "404", status: 404, body: `{"outcome":"not_executed"}`, wantErr: "HTTP 404"},
		{name: "500", status: 500, body: `{"outcome":"not_executed"}`, wantErr: "HTTP 500"},
		{name: "204 without a body", status: 204, wantErr: "HTTP 204"},
		{name: "redirect is not followed", status: 307, header: "Location: /elsewhere", wantErr: "HTTP 307"},
		{name: "timeout", hang: true, wantErr: "no answer"},
		{name: "garbled JSON", status: 200, body: `{"outcome":"not_exec`, wantErr: "malformed answer"},
		{name: "empty body", status: 200, body: ``, wantErr: "malformed answer"},
		{name: "not an object", status: 200, body: `"not_executed"`, wantErr: "malformed answer"},
		{name: "unknown field", status: 200, body: `{"outcome":"not_executed","executed":true}`, wantErr: "malformed answer"},
		{name: "duplicate member", status: 200, body: `{"outcome":"executed","outcome":"not_executed"}`, wantErr: "malformed answer"},
		{name: "trailing data", status: 200, body: `{"outcome":"not_executed"} {"outcome":"executed"}`, wantErr: "malformed answer"},
		{name: "executed without response", status: 200, body: `{"outcome":"executed"}`, wantErr: "malformed answer"},
		{name: "executed with status 0", status: 200, body: `{"outcome":"executed","response":{"status":0}}`, wantErr: "malformed answer"},
		{name: "executed with status 600", status: 200, body: `{"outcome":"executed","response":{"status":600}}`, wantErr: "malformed answer"},
		{name: "executed with a CRLF in a header value", status: 200, body: `{"outcome":"executed","response":{"status":201,"headers":[["x-a","1\r\nset-cookie: s=1"]]}}`, wantErr: "malformed answer"},
		{name: "executed with a pseudo-header", status: 200, body: `{"outcome":"executed","response":{"status":201,"headers":[[":status","200"]]}}`, wantErr: "malformed answer"},
		{name: "executed with a header of three strings", status: 200, body: `{"outcome":"executed","response":{"status":201,"headers":[["a","b","c"]]}}`, wantErr: "malformed answer"},
		{name: "executed with a body not base64", status: 200, body: `{"outcome":"executed","response":{"status":201,"body":"!!"}}`, wantErr: "malformed answer"},
		// encoding/json matches member names without regard to case: two
		// spellings of one member are a duplicate another parser may read
		// the other way, and a spelling of its own is not the contract's.
		{name: "outcome twice, in two cases", status: 200, body: `{"outcome":"executed","response":{"status":201},"OUTCOME":"not_executed"}`, wantErr: "malformed answer"},
		{name: "outcome in another case", status: 200, body: `{"Outcome":"not_executed"}`, wantErr: "malformed answer"},
		{name: "a member spelled with a long s", status: 200, body: `{"outcome":"unknown","retry_after_mſ":5000}`, wantErr: "malformed answer"},
		{name: "response status in another case", status: 200, body: `{"outcome":"executed","response":{"status":201,"Status":500}}`, wantErr: "malformed answer"},
		{name: "oversized body", status: 200, body: `{"outcome":"not_executed"}` + strings.Repeat(" ", 4096), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type seen struct {
				method, path, ctype, auth string
				query                     api.ReconcileQuery
			}
			reqs := make(chan seen, 1)
			done := make(chan struct{})
			defer close(done)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := seen{method: r.Method, path: r.URL.EscapedPath(), ctype: r.Header.Get("Content-Type"), auth: r.Header.Get("Authorization")}
				b, _ := io.ReadAll(r.Body)
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&s.query); err != nil {
					t.Errorf("query %s: %v", b, err)
				}
				reqs <- s
				if tt.hang {
					select {
					case <-r.Context().Done():
					case <-done:
					}
					return
				}
				if name, value, ok := strings.Cut(tt.header, ": "); ok {
					w.Header().Set(name, value)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer up.Close()
			timeout := 10 * time.Second // wide: this machine is loaded
			if tt.hang {
				timeout = 100 * time.Millisecond
			}
			c := NewClient([]Target{{Name: "payments", Template: up.URL + "/idem/{key}?a={attempt}", Credential: "svc-secret"}},
				nil, timeout, 2048)
			a, err := c.Lookup(context.Background(), "payments", query)

			got := <-reqs
			if got.method != http.MethodPost || got.path != "/idem/8e1f%2F0c1a" || got.ctype != "application/json" ||
				got.auth != "Bearer svc-secret" || got.query != query {
				t.Errorf("request: %+v", got)
			}
			if tt.want != "" {
				if err != nil || a.Outcome != tt.want {
					t.Fatalf("Lookup = %+v, %v; want %s", a, err, tt.want)
				}
				return
			}
			var le *LookupError
			if !errors.As(err, &le) || le.Target != "payments" || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Lookup = %+v, %v; want a *LookupError containing %q", a, err, tt.wantErr)
			}
			if a.Outcome != "" {
				t.Errorf("a failed lookup returned the outcome %q", a.Outcome)
			}
		})
	}
}

func TestLookupAnswerFields(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"outcome":"executed","response":{"status":201,"headers":[["content-type","application/json"],["location","/p/1"]],"body":"eyJpZCI6InBheV8xIn0="}}`)
	}))
	defer up.Close()
	c := NewClient([]Target{{Name: DefaultTarget, Template: up.URL + "/{attempt}"}}, nil, time.Second, MaxAnswerBytes(1<<20))
	a, err := c.Lookup(context.Background(), "", query) // "" is the default target
	if err != nil {
		t.Fatal(err)
	}
	r := a.Response
	if r == nil || r.Status != 201 || len(r.Headers) != 2 || r.Headers[1] != [2]string{"location", "/p/1"} || string(r.Body) != `{"id":"pay_1"}` {
		t.Errorf("answer %+v, response %+v", a, r)
	}
}

func TestLookupWithoutCredentialSendsNoAuthorization(t *testing.T) {
	auth := make(chan []string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Values("Authorization")
		io.WriteString(w, `{"outcome":"unknown"}`)
	}))
	defer up.Close()
	c := NewClient([]Target{{Name: DefaultTarget, Template: up.URL + "/{key}"}}, nil, time.Second, 4096)
	if _, err := c.Lookup(context.Background(), DefaultTarget, query); err != nil {
		t.Fatal(err)
	}
	if got := <-auth; len(got) != 0 {
		t.Errorf("Authorization %q sent without a credential", got)
	}
}

func TestLookupFailures(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more
	c := NewClient([]Target{{Name: DefaultTarget, Template: down.URL + "/{key}"}}, nil, time.Second, 4096)
	for _, tt := range []struct {
		name, target, wantErr string
	}{
		{"upstream down", DefaultTarget, "no answer"},
		{"target not configured", "orders", "no reconcile target orders is configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Lookup(context.Background(), tt.target, query)
			var le *LookupError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Lookup = %v, want a *LookupError containing %q", err, tt.wantErr)
			}
		})
	}
	if c.HasTarget("orders") || !c.HasTarget("") || !c.HasTarget(DefaultTarget) {
		t.Errorf("HasTarget: orders %v, \"\" %v, default %v", c.HasTarget("orders"), c.HasTarget(""), c.HasTarget(DefaultTarget))
	}
}
