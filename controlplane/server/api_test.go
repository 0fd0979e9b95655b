package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/server"
)

func TestFlow(t *testing.T) {
	e := newEnv(t)
	const scope, key, fp = "tenant-1", "k1", "sha256:aaaa"
	stored := api.StoredResponse{
		Status:  201,
		Headers: [][2]string{{"content-type", "application/json"}, {"location", "/payments/pay_1"}},
		Body:    []byte(`{"id":"pay_1","amount":100}`),
	}

	tok := e.acquire(scope, key, fp)

	// Same key and fingerprint while held: in progress, with the lease left.
	if res := e.reserve(scope, key, fp); res.Outcome != api.InProgress || res.LeaseRemainingMS <= 0 || res.LeaseRemainingMS > api.DefaultLease.Milliseconds() || res.Token != "" {
		t.Errorf("second reserve = %+v, want in_progress with 0 < lease_remaining_ms ≤ 30000 and no token", res)
	}
	// Another fingerprint: mismatch.
	if res := e.reserve(scope, key, "sha256:bbbb"); res.Outcome != api.Mismatch {
		t.Errorf("reserve with another fingerprint = %+v, want mismatch", res)
	}

	e.completeWith(scope, key, tok, stored)

	// Replay.
	res := e.reserve(scope, key, fp)
	if res.Outcome != api.Completed || res.Response == nil || !reflect.DeepEqual(*res.Response, stored) {
		t.Errorf("reserve after complete = %+v (response %+v), want completed with %+v", res, res.Response, stored)
	}
	if res.ExpiresInMS <= 0 || res.ExpiresInMS > api.DefaultTTL.Milliseconds() {
		t.Errorf("completed answer expires_in_ms = %d, want the record's remaining TTL", res.ExpiresInMS)
	}
	if res := e.reserve(scope, key, "sha256:bbbb"); res.Outcome != api.Mismatch {
		t.Errorf("reserve of a completed key with another fingerprint = %+v, want mismatch", res)
	}

	// A retried complete of the same token (the first answer was lost) is
	// delivered: 200, and the first response stays. Release is stale.
	resp, body := e.do(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: scope, Key: key, Token: tok, Response: api.StoredResponse{Status: 500}})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("retried complete = %d %s, want 200", resp.StatusCode, body)
	}
	resp, body = e.do(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: scope, Key: key, Token: "1.not-the-token", Response: api.StoredResponse{Status: 500}})
	problemOf(t, resp, body, http.StatusConflict)
	resp, body = e.do(http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: scope, Key: key, Token: tok})
	if p := problemOf(t, resp, body, http.StatusConflict); p.Type != "urn:idemgate:problem:stale-token" {
		t.Errorf("stale release problem type = %q", p.Type)
	}
	if res := e.reserve(scope, key, fp); res.Outcome != api.Completed || res.Response.Status != 201 {
		t.Errorf("after stale calls reserve = %+v, want the stored 201 still", res)
	}
}

func TestReleaseThenRetry(t *testing.T) {
	e := newEnv(t)
	tok := e.acquire("s", "k", "fp")
	var res api.Result
	e.call(http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "k", Token: tok}, http.StatusOK, &res)
	if res.Outcome != "released" {
		t.Errorf("release = %+v, want released", res)
	}
	tok2 := e.acquire("s", "k", "fp")
	if tok2 == tok {
		t.Error("a new reservation reused the released token")
	}
	// The released holder cannot complete over the new one.
	resp, body := e.do(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: tok, Response: api.StoredResponse{Status: 200}})
	problemOf(t, resp, body, http.StatusConflict)
	e.completeWith("s", "k", tok2, api.StoredResponse{Status: 204})
}

// TestLeaseEndLocks: a lease that ends without word from the holder (the
// default, on_indeterminate lock) makes the key indeterminate, never
// handed over; the holder's late complete still lands and is replayed.
func TestLeaseEndLocks(t *testing.T) {
	e := newEnv(t)
	var res api.ReserveResponse
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp", LeaseMS: 50}, http.StatusOK, &res)
	time.Sleep(120 * time.Millisecond)
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.Indeterminate || r.ExpiresInMS <= 0 || r.Token != "" {
		t.Fatalf("reserve after the lease = %+v, want indeterminate with expires_in_ms", r)
	}
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.Indeterminate {
		t.Fatalf("second reserve after the lease = %+v, want indeterminate", r)
	}
	// The transition, once, is a WARN line and a count.
	if got := len(logLines(t, e.logs.String(), map[string]string{"level": "WARN", "op": "reserve", "outcome": "indeterminate"})); got != 1 {
		t.Errorf("%d WARN lines for the lease end, want 1:\n%s", got, e.logs.String())
	}
	if m := metricsText(t, e); !strings.Contains(m, "idemgate_leases_ended_total 1") {
		t.Error("idemgate_leases_ended_total is not 1")
	}
	e.completeWith("s", "k", res.Token, api.StoredResponse{Status: 201})
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.Completed || r.Response == nil || r.Response.Status != 201 {
		t.Fatalf("reserve after the late complete = %+v, want the replay", r)
	}
}

// TestLeaseTakeover: a route that opted into takeover (on_indeterminate
// release) hands the key over when the lease ends.
func TestLeaseTakeover(t *testing.T) {
	e := newEnv(t)
	var res api.ReserveResponse
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp", LeaseMS: 50, OnIndeterminate: api.LeaseRelease}, http.StatusOK, &res)
	old := res.Token
	time.Sleep(120 * time.Millisecond)
	tok := e.acquire("s", "k", "fp")
	if tok == old {
		t.Fatal("takeover kept the old token")
	}
	resp, body := e.do(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: old, Response: api.StoredResponse{Status: 200}})
	problemOf(t, resp, body, http.StatusConflict)
	e.completeWith("s", "k", tok, api.StoredResponse{Status: 200})
}

// TestConcurrentReservesOneAcquires: 64 reserves of one key at once, one
// acquires. Admission control is off here: it would shed some at its
// default bound (reserves get 48 of 64 slots) and this tests the store's
// atomicity, not shedding (admit_test.go does).
func TestConcurrentReservesOneAcquires(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.opt.MaxInFlight = -1 })
	const n = 64
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[api.Outcome]int{}
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := e.reserve("s", "contended", "fp")
			mu.Lock()
			outcomes[res.Outcome]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if outcomes[api.Acquired] != 1 || outcomes[api.InProgress] != n-1 {
		t.Errorf("outcomes of %d concurrent reserves = %v, want 1 acquired and %d in_progress", n, outcomes, n-1)
	}
}

func TestStoredResponseCap(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.storeOpt.MaxStoredResponse = 1000 })
	tok := e.acquire("s", "big", "fp")
	e.completeWith("s", "big", tok, api.StoredResponse{Status: 200, Headers: [][2]string{{"a", "b"}}, Body: bytes.Repeat([]byte("x"), 2000)})
	res := e.reserve("s", "big", "fp")
	want := api.StoredResponse{Status: 200, BodyOmitted: true}
	if res.Outcome != api.Completed || res.Response == nil || !reflect.DeepEqual(*res.Response, want) {
		t.Errorf("replay of an over-cap response = %+v, want %+v", res.Response, want)
	}
	var rec api.Record
	e.call(http.MethodGet, api.PathAdminKeys+query("s", "big"), nil, http.StatusOK, &rec)
	if !rec.BodyOmitted || rec.Status != 200 {
		t.Errorf("record = %+v, want body_omitted and status 200", rec)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	reserve := api.ReserveRequest{Scope: "s", Key: "auth", Fingerprint: "fp"}
	for _, tt := range []struct {
		name, authz   string
		want          int
		wantChallenge string
	}{
		{"missing", "", http.StatusUnauthorized, `Bearer realm="idemgate"`},
		{"wrong token", "Bearer nope-nope-nope-nope", http.StatusUnauthorized, `Bearer realm="idemgate", error="invalid_token"`},
		{"token prefix", "Bearer " + token[:len(token)-1], http.StatusUnauthorized, `Bearer realm="idemgate", error="invalid_token"`},
		{"token plus a byte", "Bearer " + token + "x", http.StatusUnauthorized, `Bearer realm="idemgate", error="invalid_token"`},
		{"basic scheme", "Basic " + token, http.StatusUnauthorized, `Bearer realm="idemgate"`},
		{"scheme only", "Bearer", http.StatusUnauthorized, `Bearer realm="idemgate"`},
		{"ok", "Bearer " + token, http.StatusOK, ""},
		{"ok, scheme in lower case", "bearer " + token, http.StatusOK, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(http.MethodPost, api.PathReserve, reserve, "Authorization", tt.authz)
			if tt.want == http.StatusOK {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d %s, want 200", resp.StatusCode, body)
				}
				return
			}
			problemOf(t, resp, body, tt.want)
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantChallenge)
			}
		})
	}
	// Every /v1/ endpoint is protected, admin included.
	for _, ep := range []struct{ method, path string }{
		{http.MethodPost, api.PathComplete}, {http.MethodPost, api.PathRelease},
		{http.MethodGet, api.PathAdminKeys + query("s", "k")}, {http.MethodDelete, api.PathAdminKeys + query("s", "k")},
		{http.MethodPost, api.PathAdminRelease + query("s", "k")},
	} {
		resp, body := e.do(ep.method, ep.path, nil, "Authorization", "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without a token = %d %s, want 401", ep.method, ep.path, resp.StatusCode, body)
		}
	}
	// Health, readiness and metrics need none.
	for _, p := range []string{api.PathHealthz, api.PathReadyz, api.PathMetrics} {
		if resp, body := e.do(http.MethodGet, p, nil, "Authorization", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token = %d %s, want 200", p, resp.StatusCode, body)
		}
	}
}

// TestAdminToken: with an admin token set, every admin endpoint refuses
// the filter's token (403) and serves the admin token; a wrong token is
// 401 there; the admin token opens nothing but the admin endpoints.
func TestAdminToken(t *testing.T) {
	e := newEnv(t, func(s *setup) {
		s.opt.AdminToken = adminToken
		s.reconcile = []reconcile.Target{{Name: reconcile.DefaultTarget, Template: "http://127.0.0.1:1/{key}"}}
	})
	keyQ := query("s", "absent")
	for _, ep := range []struct {
		name, method, path string
		adminStatus        int // with the admin token
	}{
		{"admin get", http.MethodGet, api.PathAdminKeys + keyQ, http.StatusNotFound},
		{"admin delete", http.MethodDelete, api.PathAdminKeys + keyQ, http.StatusOK},
		{"admin delete dry run", http.MethodDelete, api.PathAdminKeys + query("s", "absent", "dry_run=1"), http.StatusOK},
		{"admin release", http.MethodPost, api.PathAdminRelease + keyQ, http.StatusOK},
		{"admin release dry run", http.MethodPost, api.PathAdminRelease + query("s", "absent", "dry_run=1"), http.StatusOK},
		{"admin list", http.MethodGet, api.PathAdminKeyList + "?state=indeterminate", http.StatusOK},
		{"admin list in progress", http.MethodGet, api.PathAdminKeyList + "?state=in_progress&scope=s", http.StatusOK},
		{"admin reconcile", http.MethodPost, api.PathAdminReconcile + keyQ, http.StatusOK},
		{"admin reconcile dry run", http.MethodPost, api.PathAdminReconcile + query("s", "absent", "dry_run=1"), http.StatusOK},
	} {
		t.Run(ep.name, func(t *testing.T) {
			// The filter's token is refused...
			resp, body := e.do(ep.method, ep.path, nil, "Authorization", "Bearer "+token)
			p := problemOf(t, resp, body, http.StatusForbidden)
			if !strings.Contains(p.Detail, "admin token") {
				t.Errorf("detail = %q, want it to name the admin token", p.Detail)
			}
			// ...a wrong token is not valid...
			resp, body = e.do(ep.method, ep.path, nil, "Authorization", "Bearer wrong-wrong-wrong-wrong")
			problemOf(t, resp, body, http.StatusUnauthorized)
			// ...the admin token is served.
			resp, body = e.do(ep.method, ep.path, nil, "Authorization", "Bearer "+adminToken)
			if resp.StatusCode != ep.adminStatus {
				t.Errorf("with the admin token = %d %s, want %d", resp.StatusCode, body, ep.adminStatus)
			}
		})
	}
	// The admin token opens only the admin endpoints.
	for _, ep := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f"}},
		{http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: "t", Response: api.StoredResponse{Status: 200}}},
		{http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "k", Token: "t"}},
		{http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "k", Token: "t"}},
		{http.MethodGet, api.PathEdgeEpoch, nil},
	} {
		resp, body := e.do(ep.method, ep.path, ep.body, "Authorization", "Bearer "+adminToken)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with the admin token = %d %s, want 401", ep.method, ep.path, resp.StatusCode, body)
		}
	}
}

func TestInsecureNoAuth(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.opt = server.Options{InsecureNoAuth: true} })
	e.token = ""
	e.acquire("s", "k", "fp")
	resp, body := e.do(http.MethodGet, api.PathAdminKeys+query("s", "k"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin get without auth in insecure mode = %d %s", resp.StatusCode, body)
	}
}

func TestNewRequiresAToken(t *testing.T) {
	if _, err := server.New(nil, server.Options{}); err == nil {
		t.Error("server.New without a token or InsecureNoAuth succeeded")
	}
}

// TestReserveTTLShorterThanDefaultLease: a reserve that gives only a TTL
// shorter than the default lease (30s) is served with the TTL as its lease,
// not refused.
func TestReserveTTLShorterThanDefaultLease(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name      string
		req       string
		wantLease time.Duration
	}{
		{"ttl 10s, no lease", `{"scope":"s","key":"k1","fingerprint":"f","ttl_ms":10000}`, 10 * time.Second},
		{"ttl 10s, lease 0", `{"scope":"s","key":"k2","fingerprint":"f","lease_ms":0,"ttl_ms":10000}`, 10 * time.Second},
		{"ttl 60s, no lease", `{"scope":"s","key":"k3","fingerprint":"f","ttl_ms":60000}`, api.DefaultLease},
		{"ttl 10s, lease 2s", `{"scope":"s","key":"k4","fingerprint":"f","lease_ms":2000,"ttl_ms":10000}`, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res api.ReserveResponse
			e.call(http.MethodPost, api.PathReserve, tt.req, http.StatusOK, &res)
			if res.Outcome != api.Acquired {
				t.Fatalf("reserve = %+v, want acquired", res)
			}
			var req api.ReserveRequest
			if err := json.Unmarshal([]byte(tt.req), &req); err != nil {
				t.Fatal(err)
			}
			var rec api.Record
			e.call(http.MethodGet, api.PathAdminKeys+query(req.Scope, req.Key), nil, http.StatusOK, &rec)
			if rec.LeaseExpiresAt == nil || rec.LeaseExpiresAt.Sub(rec.CreatedAt) != tt.wantLease {
				t.Errorf("record %+v: lease %v, want %v", rec, rec.LeaseExpiresAt, tt.wantLease)
			}
		})
	}
}
