package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/reconcile"
)

// lookupUpstream answers every lookup with the body set for its key and
// records the queries.
type lookupUpstream struct {
	ts      *httptest.Server
	mu      sync.Mutex
	answers map[string]string // key → body (status 200); absent: 500
	queries []api.ReconcileQuery
}

func newLookupUpstream(t *testing.T) *lookupUpstream {
	u := &lookupUpstream{answers: map[string]string{}}
	u.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q api.ReconcileQuery
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &q); err != nil {
			t.Errorf("upstream: %s: %v", b, err)
		}
		u.mu.Lock()
		u.queries = append(u.queries, q)
		body, ok := u.answers[q.Key]
		u.mu.Unlock()
		if !ok {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(u.ts.Close)
	return u
}

func (u *lookupUpstream) set(key, body string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answers[key] = body
}

func (u *lookupUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.queries)
}

func reconcileEnv(t *testing.T) (*env, *lookupUpstream) {
	u := newLookupUpstream(t)
	e := newEnv(t, func(s *setup) {
		s.reconcile = []reconcile.Target{{Name: reconcile.DefaultTarget, Template: u.ts.URL + "/__idempotency/{attempt}"}}
	})
	return e, u
}

// reserveOn reserves key on a route with on_indeterminate oi.
func (e *env) reserveOn(key, oi, target string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "fp", OnIndeterminate: oi, ReconcileTarget: target})
}

// abandoned makes key an abandoned record of a route that reconciles.
func (e *env) abandoned(key string) {
	e.t.Helper()
	var res api.ReserveResponse
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "fp", OnIndeterminate: api.LeaseReconcile}, http.StatusOK, &res)
	if res.Outcome != api.Acquired {
		e.t.Fatalf("reserve %s = %+v", key, res)
	}
	e.call(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: key, Token: res.Token}, http.StatusOK, nil)
}

// TestReserveReconcileTarget: a reserve asking for reconcile must name a
// target this control plane has; else 400, and nothing is reserved.
func TestReserveReconcileTarget(t *testing.T) {
	plain := newEnv(t)
	e, _ := reconcileEnv(t)
	tests := []struct {
		name       string
		e          *env
		oi, target string
		status     int
		detail     string
	}{
		{"reconcile off", plain, api.LeaseReconcile, "", 400, "no reconcile target default is configured on this control plane"},
		{"default target", e, api.LeaseReconcile, "", 200, ""},
		{"default target by name", e, api.LeaseReconcile, "default", 200, ""},
		{"unknown target", e, api.LeaseReconcile, "orders", 400, "no reconcile target orders is configured on this control plane"},
		{"bad target name", e, api.LeaseReconcile, "or ders", 400, "reconcile_target has a byte outside"},
		{"target without reconcile", e, api.LeaseLock, "default", 400, "reconcile_target \"default\" is set, but on_indeterminate is \"lock\""},
		{"lock needs no target", plain, api.LeaseLock, "", 200, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "k" + string(rune('a'+i))
			resp, body := tt.e.reserveOn(key, tt.oi, tt.target)
			if tt.status == 200 {
				if resp.StatusCode != 200 {
					t.Fatalf("= %d %s, want 200", resp.StatusCode, body)
				}
				return
			}
			p := problemOf(t, resp, body, tt.status)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail %q, want %q", p.Detail, tt.detail)
			}
			// Nothing was reserved: the key is still free.
			if r := tt.e.reserve("s", key, "fp"); r.Outcome != api.Acquired {
				t.Errorf("after the 400 the key is %+v, want free", r)
			}
		})
	}
}

const executedBody = `{"outcome":"executed","response":{"status":201,"headers":[["content-type","application/json"]],"body":"eyJpZCI6InBheV8xIn0="}}`

func TestAdminReconcile(t *testing.T) {
	e, u := reconcileEnv(t)
	path := func(key string, extra ...string) string { return api.PathAdminReconcile + query("s", key, extra...) }

	// A dry run: the answer shown without its body, nothing changed.
	e.abandoned("paid")
	u.set("paid", executedBody)
	var res api.AdminResult
	e.call(http.MethodPost, path("paid", "dry_run=1"), nil, http.StatusOK, &res)
	if res.Effect != api.EffectWouldComplete || res.Record == nil || res.Record.State != api.StateIndeterminate ||
		res.Answer == nil || res.Answer.Outcome != api.ReconcileExecuted || res.Answer.Response.Status != 201 || res.Answer.Response.Body != nil {
		t.Errorf("dry run = %+v (answer %+v), want would_complete, the answer without body", res, res.Answer)
	}
	if r := e.reserve("s", "paid", "fp"); r.Outcome != api.Indeterminate {
		t.Fatalf("after a dry run: %+v, want indeterminate", r)
	}
	// body=1 shows the body; applied, the record replays it.
	res = api.AdminResult{}
	e.call(http.MethodPost, path("paid", "body=1"), nil, http.StatusOK, &res)
	if res.Effect != api.EffectCompleted || res.Answer == nil || string(res.Answer.Response.Body) != `{"id":"pay_1"}` {
		t.Errorf("reconcile = %+v, want completed with the body", res)
	}
	if r := e.reserve("s", "paid", "fp"); r.Outcome != api.Completed || string(r.Response.Body) != `{"id":"pay_1"}` {
		t.Errorf("retry = %+v, want the upstream's response replayed", r)
	}
	// Asked again: the record is completed, nothing to ask.
	asked := u.count()
	res = api.AdminResult{}
	e.call(http.MethodPost, path("paid"), nil, http.StatusOK, &res)
	if res.Effect != api.EffectNoop || res.Record == nil || res.Record.State != api.StateCompleted || u.count() != asked {
		t.Errorf("reconcile of a completed record = %+v, asked %d times more", res, u.count()-asked)
	}

	e.abandoned("lost")
	u.set("lost", `{"outcome":"not_executed"}`)
	res = api.AdminResult{}
	e.call(http.MethodPost, path("lost"), nil, http.StatusOK, &res)
	if res.Effect != api.EffectReleased {
		t.Errorf("not executed = %+v, want released", res)
	}
	e.acquire("s", "lost", "fp") // a retry executes

	// Absent: noop, so a retried command is safe.
	res = api.AdminResult{}
	e.call(http.MethodPost, path("lost-again"), nil, http.StatusOK, &res)
	if res.Effect != api.EffectNoop || res.Record != nil {
		t.Errorf("absent = %+v, want noop", res)
	}

	// The upstream fails: 502, the record stays.
	e.abandoned("down")
	resp, body := e.do(http.MethodPost, path("down"), nil)
	if p := problemOf(t, resp, body, http.StatusBadGateway); p.Type != "urn:idemgate:problem:reconcile-lookup-failed" || !strings.Contains(p.Detail, "HTTP 500") {
		t.Errorf("failed lookup = %+v", p)
	}
	if r := e.reserve("s", "down", "fp"); r.Outcome != api.Indeterminate || r.ReconcileInMS < 1 {
		t.Errorf("after a failed lookup: %+v, want indeterminate with reconcile_in_ms", r)
	}

	// A route that locks is never asked about.
	tok := e.acquire("s", "locked", "fp")
	e.call(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "locked", Token: tok}, http.StatusOK, nil)
	asked = u.count()
	resp, body = e.do(http.MethodPost, path("locked"), nil)
	if p := problemOf(t, resp, body, http.StatusConflict); p.Type != "urn:idemgate:problem:not-reconcilable" || u.count() != asked {
		t.Errorf("lock route = %+v, asked %d", p, u.count()-asked)
	}

	// A live lease is refused.
	if resp, body := e.reserveOn("live", api.LeaseReconcile, ""); resp.StatusCode != 200 {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(http.MethodPost, path("live"), nil)
	if p := problemOf(t, resp, body, http.StatusConflict); p.Type != "urn:idemgate:problem:lease-live" {
		t.Errorf("live lease = %+v", p)
	}

	// Bad queries.
	for _, q := range []string{query("s", "k", "force=1"), query("s", "k", "dry_run=yes"), "?scope=s"} {
		resp, body := e.do(http.MethodPost, api.PathAdminReconcile+q, nil)
		problemOf(t, resp, body, http.StatusBadRequest)
	}

	m := metricsText(t, e)
	for _, want := range []string{
		`idemgate_operations_total{op="admin_reconcile",outcome="would_complete"} 1`,
		`idemgate_operations_total{op="admin_reconcile",outcome="completed"} 1`,
		`idemgate_operations_total{op="admin_reconcile",outcome="released"} 1`,
		`idemgate_operations_total{op="admin_reconcile",outcome="lookup_failed"} 1`,
		`idemgate_operations_total{op="admin_reconcile",outcome="not_reconcilable"} 1`,
		`idemgate_operations_total{op="admin_reconcile",outcome="lease_live"} 1`,
		`idemgate_operations_total{op="admin_reconcile",outcome="invalid"} 3`,
		`idemgate_reconcile_asked_total{target="default"} 4`,
		`idemgate_reconcile_answers_total{answer="executed",target="default"} 2`,
		`idemgate_reconcile_answers_total{answer="failed",target="default"} 1`,
		`idemgate_reconcile_applied_total{effect="completed"} 1`,
		`idemgate_reconcile_applied_total{effect="released"} 1`,
		`idemgate_reconcile_lookup_seconds_count 4`,
		`idemgate_http_requests_total{code="502",route="admin_reconcile"} 1`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestAdminReconcileOff(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(http.MethodPost, api.PathAdminReconcile+query("s", "k"), nil)
	if p := problemOf(t, resp, body, http.StatusBadRequest); !strings.Contains(p.Detail, "no --reconcile-url") {
		t.Errorf("reconcile off = %+v", p)
	}
}
