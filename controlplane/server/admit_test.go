package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
)

// heldStore stands between the server and the real store: while held,
// every reserve, complete, release and abandon reports its arrival on
// arrived, then waits until the test lets go (closes open). It counts the
// calls inside at once, so a test can check that none got past the bound.
type heldStore struct {
	server.Store
	held    atomic.Bool
	open    chan struct{}
	arrived chan string
	inside  atomic.Int64
	peak    atomic.Int64
	calls   atomic.Int64
}

func newHeldStore(st server.Store) *heldStore {
	return &heldStore{Store: st, open: make(chan struct{}), arrived: make(chan string, 256)}
}

// enter is called by each operation on its way to the store; the
// returned function marks it done.
func (h *heldStore) enter(op string) func() {
	h.calls.Add(1)
	n := h.inside.Add(1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if h.held.Load() {
		h.arrived <- op
		<-h.open
	}
	return func() { h.inside.Add(-1) }
}

func (h *heldStore) Reserve(ctx context.Context, req api.ReserveRequest) (api.ReserveResponse, error) {
	defer h.enter("reserve")()
	return h.Store.Reserve(ctx, req)
}

func (h *heldStore) Complete(ctx context.Context, req api.CompleteRequest) error {
	defer h.enter("complete")()
	return h.Store.Complete(ctx, req)
}

func (h *heldStore) Release(ctx context.Context, req api.ReleaseRequest) error {
	defer h.enter("release")()
	return h.Store.Release(ctx, req)
}

func (h *heldStore) ReleaseHolder(ctx context.Context, scope, key, holder string) (bool, error) {
	defer h.enter("release")()
	return h.Store.ReleaseHolder(ctx, scope, key, holder)
}

func (h *heldStore) Abandon(ctx context.Context, req api.AbandonRequest) error {
	defer h.enter("abandon")()
	return h.Store.Abandon(ctx, req)
}

// waitArrivals waits until n held operations have arrived at the store;
// the bound is generous, a failure is a hang, not a slow machine.
func (h *heldStore) waitArrivals(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-h.arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d held operations arrived at the store", i, n)
		}
	}
}

// noMoreArrivals checks that no held operation is waiting beyond those
// already counted.
func (h *heldStore) noMoreArrivals(t *testing.T) {
	t.Helper()
	select {
	case op := <-h.arrived:
		t.Fatalf("a %s reached the store beyond the bound", op)
	default:
	}
}

func admitEnv(t *testing.T, maxInFlight int) (*env, *heldStore) {
	t.Helper()
	var h *heldStore
	e := newEnv(t, func(s *setup) {
		s.opt.MaxInFlight = maxInFlight
		// Held calls wait on the test, not on the clock.
		s.opt.OpTimeout = time.Minute
		s.wrap = func(st server.Store) server.Store {
			h = newHeldStore(st)
			return h
		}
	})
	t.Cleanup(func() {
		if h.held.Load() {
			h.held.Store(false)
			close(h.open)
		}
	})
	return e, h
}

type answer struct {
	status     int
	retryAfter string
	body       []byte
}

// goDo sends a request in the background; its answer arrives on the
// returned channel.
func (e *env) goDo(method, path string, body any) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		resp, b := e.do(method, path, body)
		ch <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), b}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("no answer")
	}
	return answer{}
}

// checkShed checks that a is the 503 overloaded answer, Retry-After 1.
func checkShed(t *testing.T, what string, a answer) {
	t.Helper()
	var p api.Problem
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("%s: answer %d %q: %v", what, a.status, a.body, err)
	}
	if a.status != http.StatusServiceUnavailable || p.Type != "urn:idemgate:problem:overloaded" || p.Status != 503 || a.retryAfter != "1" {
		t.Errorf("%s = %d %+v Retry-After %q, want 503 urn:idemgate:problem:overloaded, Retry-After 1", what, a.status, p, a.retryAfter)
	}
}

func wantMetrics(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w+"\n") {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grep(text, "idemgate_"))
	}
}

// mustShed sends a request that must be shed at once: it fails as soon as
// the request reaches the store instead.
func (h *heldStore) mustShed(t *testing.T, e *env, what, method, path string, body any) {
	t.Helper()
	ch := e.goDo(method, path, body)
	select {
	case a := <-ch:
		checkShed(t, what, a)
	case op := <-h.arrived:
		t.Fatalf("%s: a %s reached the store beyond the bound", what, op)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer", what)
	}
}

// TestAdmissionBound: concurrent slow operations beyond the bound: as
// many as the bound reach the store, the other k are answered 503
// overloaded while those are still held (reserves at once; outcome calls
// after waiting up to 50 ms for a slot that does not come), and counted.
// With N = 4, reserves are bound at 3, complete at 4.
func TestAdmissionBound(t *testing.T) {
	const n, k = 4, 3
	for _, tc := range []struct {
		route    string
		admitted int
	}{{"reserve", 3}, {"complete", n}} {
		t.Run(tc.route, func(t *testing.T) {
			e, h := admitEnv(t, n)
			total := tc.admitted + k
			toks := make([]string, total)
			if tc.route == "complete" {
				for i := range toks {
					toks[i] = e.acquire("s", fmt.Sprintf("k%d", i), "fp")
				}
			}
			send := func(i int) <-chan answer {
				key := fmt.Sprintf("k%d", i)
				if tc.route == "reserve" {
					return e.goDo(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "fp"})
				}
				return e.goDo(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: key, Token: toks[i], Response: api.StoredResponse{Status: 201}})
			}
			callsBefore := h.calls.Load()
			h.held.Store(true)
			answers := make([]<-chan answer, total)
			for i := range answers {
				answers[i] = send(i)
			}
			h.waitArrivals(t, tc.admitted)
			// The k others are answered while the admitted are held:
			// collect k answers from whichever requests were shed.
			shed := map[int]bool{}
			deadline := time.Now().Add(30 * time.Second)
			for len(shed) < k {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d requests beyond the bound were answered while the bound was held", len(shed), k)
				}
				progressed := false
				for i, ch := range answers {
					if shed[i] {
						continue
					}
					select {
					case a := <-ch:
						checkShed(t, fmt.Sprintf("%s %d", tc.route, i), a)
						shed[i] = true
						progressed = true
					default:
					}
				}
				if !progressed {
					h.noMoreArrivals(t)
					time.Sleep(5 * time.Millisecond)
				}
				if t.Failed() {
					return
				}
			}
			h.noMoreArrivals(t)
			wantMetrics(t, metricsText(t, e),
				fmt.Sprintf(`idemgate_shed_total{route=%q} %d`, tc.route, k),
				fmt.Sprintf(`idemgate_operations_total{op=%q,outcome="shed"} %d`, tc.route, k),
				fmt.Sprintf(`idemgate_inflight_operations %d`, tc.admitted),
				fmt.Sprintf(`idemgate_http_requests_total{code="503",route=%q} %d`, tc.route, k),
			)

			h.held.Store(false)
			close(h.open)
			for i, ch := range answers {
				if shed[i] {
					continue
				}
				if a := recv(t, ch); a.status != http.StatusOK {
					t.Errorf("admitted %s %d = %d %s, want 200", tc.route, i, a.status, a.body)
				}
			}
			if got := h.peak.Load(); got != int64(tc.admitted) {
				t.Errorf("%d operations were in the store at once, want the bound %d", got, tc.admitted)
			}
			if got := h.calls.Load() - callsBefore; got != int64(tc.admitted) {
				t.Errorf("%d store calls, want %d (the shed ones never reached it)", got, tc.admitted)
			}
			// Nothing was done for the shed ones: a retry (the filter's
			// outbox, or the client's) does it.
			for i := range shed {
				key := fmt.Sprintf("k%d", i)
				if tc.route == "reserve" {
					e.acquire("s", key, "fp")
				} else {
					e.completeWith("s", key, toks[i], api.StoredResponse{Status: 201})
				}
			}
			wantMetrics(t, metricsText(t, e), `idemgate_inflight_operations 0`)
			checkShedLogs(t, e.logs.String())
		})
	}
}

// checkShedLogs: shedding is logged once a second with a count, not once
// per request above DEBUG.
func checkShedLogs(t *testing.T, logs string) {
	t.Helper()
	if c := strings.Count(logs, `"msg":"shedding load`); c < 1 {
		t.Errorf("no 'shedding load' line in the log")
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"outcome":"shed"`) && !strings.Contains(l, `"level":"DEBUG"`) {
			t.Errorf("a shed request logged above DEBUG: %s", l)
		}
	}
}

// TestAdmissionShedsReservesFirst: with N = 4 slots, reserves (and
// edge-epoch, admin) get 3; the fourth is kept for the outcome calls the
// filter retries from its queue. Health, readiness and metrics are never
// shed.
func TestAdmissionShedsReservesFirst(t *testing.T) {
	e, h := admitEnv(t, 4)
	tokA := e.acquire("s", "a", "fp")
	tokB := e.acquire("s", "b", "fp")
	h.held.Store(true)

	var reserves []<-chan answer
	for i := range 3 {
		reserves = append(reserves, e.goDo(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: fmt.Sprintf("r%d", i), Fingerprint: "fp"}))
	}
	h.waitArrivals(t, 3)

	// Three in flight: every low-class request is shed, synchronously.
	h.mustShed(t, e, "fourth reserve", http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "r3", Fingerprint: "fp"})
	h.mustShed(t, e, "edge-epoch", http.MethodGet, api.PathEdgeEpoch, nil)
	h.mustShed(t, e, "admin get", http.MethodGet, api.PathAdminKeys+query("s", "a"), nil)

	// ...but an outcome call gets the slot kept for it.
	complete := e.goDo(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "a", Token: tokA, Response: api.StoredResponse{Status: 200}})
	h.waitArrivals(t, 1)

	// Four in flight: outcome calls are shed too.
	for _, c := range []struct {
		path string
		body any
	}{
		{api.PathComplete, api.CompleteRequest{Scope: "s", Key: "b", Token: tokB, Response: api.StoredResponse{Status: 200}}},
		{api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "b", Token: tokB}},
		{api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "b", Holder: "holder-0123456789abcdef"}},
		{api.PathAbandon, api.AbandonRequest{Scope: "s", Key: "b", Token: tokB}},
	} {
		h.mustShed(t, e, c.path, http.MethodPost, c.path, c.body)
	}
	// A refused request takes no slot and is refused as before.
	if resp, body := e.do(http.MethodPost, api.PathReserve, `{"scope":""}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid reserve while saturated = %d %s, want 400", resp.StatusCode, body)
	}
	for _, p := range []string{api.PathHealthz, api.PathReadyz} {
		if resp, body := e.do(http.MethodGet, p, nil, "Authorization", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s while saturated = %d %s, want 200", p, resp.StatusCode, body)
		}
	}
	wantMetrics(t, metricsText(t, e),
		`idemgate_shed_total{route="reserve"} 1`,
		`idemgate_shed_total{route="edge_epoch"} 1`,
		`idemgate_shed_total{route="admin_keys"} 1`,
		`idemgate_shed_total{route="complete"} 1`,
		`idemgate_shed_total{route="release"} 2`,
		`idemgate_shed_total{route="abandon"} 1`,
		`idemgate_operations_total{op="reserve",outcome="shed"} 1`,
		`idemgate_operations_total{op="reserve",outcome="invalid"} 1`,
		`idemgate_inflight_operations 4`,
	)

	h.held.Store(false)
	close(h.open)
	for i, ch := range reserves {
		a := recv(t, ch)
		var rr api.ReserveResponse
		if err := json.Unmarshal(a.body, &rr); a.status != http.StatusOK || err != nil || rr.Outcome != api.Acquired {
			t.Errorf("held reserve %d = %d %s, want 200 acquired", i, a.status, a.body)
		}
	}
	if a := recv(t, complete); a.status != http.StatusOK {
		t.Errorf("admitted complete = %d %s, want 200", a.status, a.body)
	}
	if got := h.peak.Load(); got != 4 {
		t.Errorf("%d operations in the store at once, want 4", got)
	}
	// The shed reserve reached nothing: its key is free, and b was left
	// as it was (in progress, its token still holding).
	if res := e.reserve("s", "r3", "fp"); res.Outcome != api.Acquired {
		t.Errorf("reserve of the shed key = %+v, want acquired (nothing was written)", res)
	}
	e.completeWith("s", "b", tokB, api.StoredResponse{Status: 200})
}

// TestRedisPoolWaitBounded: with every Redis connection busy, an
// operation waits --redis-pool-timeout for one, not --op-timeout, and is
// answered 503 (retried once by the store, as a failover error is).
func TestRedisPoolWaitBounded(t *testing.T) {
	rs := redistest.Start(t)
	client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{PoolSize: 1, PoolTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	var retries atomic.Int64
	st := store.New(client, store.Options{Observer: store.Observer{Retry: func(_, reason string) {
		if reason == "pool" {
			retries.Add(1)
		}
	}}})
	// A long op timeout: the answer must come from the pool timeout.
	srv, err := server.New(st, server.Options{Token: token, OpTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The pool's one connection is taken by a BLPOP that waits for the test.
	var wg sync.WaitGroup
	blocked := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(blocked)
		client.BLPop(context.Background(), 0, "admit-test-unblock")
	}()
	<-blocked
	// The BLPOP holds the connection once Redis sees a blocked client.
	probe := rs.Client()
	if !eventually(t, 30*time.Second, func() bool {
		info, err := probe.Info(context.Background(), "clients").Result()
		return err == nil && strings.Contains(info, "blocked_clients:1")
	}) {
		t.Fatal("the BLPOP never blocked")
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	e := &env{t: t, srv: srv, ts: ts, token: token}
	resp, body := e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp"})
	p := problemOf(t, resp, body, http.StatusServiceUnavailable)
	if p.Type != "urn:idemgate:problem:store-unavailable" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("answer %+v Retry-After %q, want store-unavailable, Retry-After 1", p, resp.Header.Get("Retry-After"))
	}
	if retries.Load() != 1 {
		t.Errorf("%d pool retries, want 1 (--redis-max-retries default)", retries.Load())
	}
	if err := probe.LPush(context.Background(), "admit-test-unblock", "x").Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// The connection is back: the same request now succeeds.
	if resp, body := e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp"}); resp.StatusCode != http.StatusOK {
		t.Errorf("reserve after the pool freed = %d %s", resp.StatusCode, body)
	}
}
