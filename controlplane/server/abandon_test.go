package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// TestAbandon: the filter forwarded a request and got no response; the
// operation may have run. Abandon marks the key indeterminate: retries with
// the same payload are answered indeterminate for as long as the record
// lives (never taken over), another payload is a mismatch, the holder's
// token neither completes nor releases it (abandoning again is
// acknowledged), and only an operator (admin release or delete) or the TTL
// frees it.
func TestAbandon(t *testing.T) {
	e := newEnv(t)
	const ttl = 60 * time.Second
	var res api.ReserveResponse
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp", LeaseMS: 100, TTLMS: ttl.Milliseconds()}, http.StatusOK, &res)
	tok := res.Token

	var out api.Result
	e.call(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "k", Token: tok}, http.StatusOK, &out)
	if out.Outcome != "indeterminate" {
		t.Errorf("abandon = %+v, want indeterminate", out)
	}

	time.Sleep(200 * time.Millisecond) // past the lease: still no takeover
	for i := 0; i < 2; i++ {
		r := e.reserve("s", "k", "fp")
		if r.Outcome != api.Indeterminate || r.Token != "" || r.ExpiresInMS > ttl.Milliseconds() || r.ExpiresInMS < ttl.Milliseconds()-5_000 {
			t.Errorf("reserve of an indeterminate key = %+v, want indeterminate with about %v left (the record's TTL)", r, ttl)
		}
	}
	if r := e.reserve("s", "k", "other"); r.Outcome != api.Mismatch {
		t.Errorf("reserve with another fingerprint = %+v, want mismatch", r)
	}

	// A retried abandon is acknowledged; the token completes and releases
	// nothing.
	e.call(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "k", Token: tok}, http.StatusOK, nil)
	for _, c := range []struct {
		path string
		body any
	}{
		{api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: tok, Response: api.StoredResponse{Status: 200}}},
		{api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "k", Token: tok}},
	} {
		resp, body := e.do(http.MethodPost, c.path, c.body)
		if p := problemOf(t, resp, body, http.StatusConflict); p.Type != "urn:idemgate:problem:stale-token" {
			t.Errorf("%s after abandon: problem %+v, want stale-token", c.path, p)
		}
	}

	var rec api.Record
	e.call(http.MethodGet, api.PathAdminKeys+query("s", "k"), nil, http.StatusOK, &rec)
	if rec.State != api.StateIndeterminate || rec.LeaseExpiresAt != nil || rec.Status != 0 || rec.Fingerprint != storedFP("fp") {
		t.Errorf("admin get = %+v, want state indeterminate without lease or status", rec)
	}

	// An operator who has checked the upstream frees it.
	var ar api.AdminResult
	e.call(http.MethodPost, api.PathAdminRelease+query("s", "k", "dry_run=1"), nil, http.StatusOK, &ar)
	if ar.Effect != api.EffectWouldRelease || ar.Record == nil || ar.Record.State != api.StateIndeterminate {
		t.Errorf("admin release dry run = %+v, want would_release of the indeterminate record", ar)
	}
	ar = api.AdminResult{}
	e.call(http.MethodPost, api.PathAdminRelease+query("s", "k"), nil, http.StatusOK, &ar)
	if ar.Effect != api.EffectReleased || ar.Record == nil || ar.Record.State != api.StateIndeterminate {
		t.Errorf("admin release = %+v, want released, the record as it was", ar)
	}
	e.acquire("s", "k", "fp") // free again

	// Or deletes it.
	tok2 := e.acquire("s", "k2", "fp")
	e.call(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "k2", Token: tok2}, http.StatusOK, nil)
	ar = api.AdminResult{}
	e.call(http.MethodDelete, api.PathAdminKeys+query("s", "k2"), nil, http.StatusOK, &ar)
	if ar.Effect != api.EffectDeleted || ar.Record == nil || ar.Record.State != api.StateIndeterminate {
		t.Errorf("admin delete = %+v, want deleted, the record as it was", ar)
	}
	e.acquire("s", "k2", "other")
}

func TestAbandonRefusals(t *testing.T) {
	e := newEnv(t)
	// Absent, completed, or held under another token: 409, nothing changes.
	resp, body := e.do(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "absent", Token: "1.X"})
	problemOf(t, resp, body, http.StatusConflict)
	tok := e.acquire("s", "done", "fp")
	e.completeWith("s", "done", tok, api.StoredResponse{Status: 201})
	resp, body = e.do(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "done", Token: tok})
	problemOf(t, resp, body, http.StatusConflict)
	if r := e.reserve("s", "done", "fp"); r.Outcome != api.Completed {
		t.Errorf("completed record after abandon = %+v, want still completed", r)
	}
	e.acquire("s", "held", "fp")
	resp, body = e.do(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "held", Token: "1.NOTTHETOKEN"})
	problemOf(t, resp, body, http.StatusConflict)

	for _, tt := range []struct{ name, body, detail string }{
		{"no token", `{"scope":"s","key":"k"}`, "token is empty"},
		{"no scope", `{"key":"k","token":"t"}`, "scope is empty"},
		{"unknown field", `{"scope":"s","key":"k","token":"t","fingerprint":"f"}`, `unknown field "fingerprint"`},
	} {
		resp, body := e.do(http.MethodPost, api.PathAbandon, tt.body)
		if p := problemOf(t, resp, body, http.StatusBadRequest); !strings.Contains(p.Detail, tt.detail) {
			t.Errorf("%s: detail %q, want %q", tt.name, p.Detail, tt.detail)
		}
	}
	resp, body = e.do(http.MethodGet, api.PathAbandon, nil)
	problemOf(t, resp, body, http.StatusMethodNotAllowed)

	m := metricsText(t, e)
	for _, want := range []string{
		`idemgate_operations_total{op="abandon",outcome="stale"} 3`,
		`idemgate_operations_total{op="abandon",outcome="invalid"} 3`,
		`idemgate_operations_total{op="abandon",outcome="indeterminate"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(m, `op="abandon"`))
		}
	}
}
