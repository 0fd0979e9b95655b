package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
)

// withRedisMetrics registers the Redis metrics and gives their observer to
// the store, as main does; durable sets the durable mode.
func withRedisMetrics(d store.Durability) func(*setup) {
	return func(s *setup) {
		reg := server.NewRegistry()
		s.opt.Registry = reg
		s.storeOpt.Observer = server.NewRedisMetrics(reg).Observer()
		s.storeOpt.Durable = d
		s.opt.AdminToken = adminToken
	}
}

// TestDurableShortfallIs503: durable mode on a Redis without the replicas
// it asks for: every state change answers 503 + Retry-After with the
// redis-unavailable problem, whose detail says the change may have been
// made; reads answer; the shortfalls and WAIT round trips are counted;
// /readyz says not ready and why, without the node's address.
func TestDurableShortfallIs503(t *testing.T) {
	e := newEnv(t, withRedisMetrics(store.Durability{Replicas: 1, Timeout: 20 * time.Millisecond}))

	resp, body := e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp", Holder: "H0123456789abcdef0123456"})
	p := problemOf(t, resp, body, http.StatusServiceUnavailable)
	if p.Type != "urn:idemgate:problem:store-unavailable" || !strings.Contains(p.Detail, "durable mode") {
		t.Errorf("problem %+v, want store-unavailable saying durable mode", p)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	resp, body = e.do(http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "k", Holder: "H0123456789abcdef0123456"})
	problemOf(t, resp, body, http.StatusServiceUnavailable)

	// The reserve stands on the master (the filter releases by holder
	// after a failed reserve; here the release by holder removed it).
	e.token = adminToken
	resp, body = e.do(http.MethodGet, api.PathAdminKeys+query("s", "k"), nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("admin get: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Idemgate-Redis-Node"); got != e.redis.Addr() {
		t.Errorf("Idemgate-Redis-Node = %q, want %s", got, e.redis.Addr())
	}

	m := metricsText(t, e)
	for _, want := range []string{
		`idemgate_redis_wait_shortfalls_total{op="reserve"} 1`,
		`idemgate_redis_wait_shortfalls_total{op="release_holder"} 1`,
		`idemgate_redis_wait_shortfalls_total{op="complete"} 0`,
		`idemgate_redis_durable_wait_seconds_count 2`,
		`idemgate_redis_retries_total{op="reserve"} 0`,
		`idemgate_redis_failovers_total 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(m, "idemgate_redis"))
		}
	}

	resp, body = e.do(http.MethodGet, api.PathReadyz, nil, "Authorization", "")
	p = problemOf(t, resp, body, http.StatusServiceUnavailable)
	if !strings.Contains(p.Detail, "0 replicas online") || strings.Contains(p.Detail, e.redis.Addr()) {
		t.Errorf("readyz detail %q: want the reason, not the address", p.Detail)
	}
}

// TestAdminNamesRedisNode: every admin answer carries the node that ran
// it; the filter's operations do not.
func TestAdminNamesRedisNode(t *testing.T) {
	e := newEnv(t, withRedisMetrics(store.Durability{}))
	tok := e.acquire("s", "k", "fp")
	resp := e.call(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: tok, Response: api.StoredResponse{Status: 201}}, http.StatusOK, nil)
	if got := resp.Header.Get("Idemgate-Redis-Node"); got != "" {
		t.Errorf("complete names the node %q; only admin answers do", got)
	}
	e.token = adminToken
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, api.PathAdminKeys + query("s", "k")},
		{http.MethodGet, api.PathAdminKeyList + "?state=in_progress"},
		{http.MethodPost, api.PathAdminRelease + query("s", "k", "dry_run=1")},
		{http.MethodDelete, api.PathAdminKeys + query("s", "k")},
		{http.MethodDelete, api.PathAdminKeys + query("s", "k")}, // noop
	} {
		resp, body := e.do(c.method, c.path, nil)
		if got := resp.Header.Get("Idemgate-Redis-Node"); got != e.redis.Addr() {
			t.Errorf("%s %s = %d %s: Idemgate-Redis-Node %q, want %s", c.method, c.path, resp.StatusCode, body, got, e.redis.Addr())
		}
	}
	resp, body := e.do(http.MethodGet, api.PathReadyz, nil, "Authorization", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz = %d %s", resp.StatusCode, body)
	}
}
