package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/e2e/upstream"
)

// Issue 15: with on_indeterminate: reconcile the control plane asks the
// demo upstream (POST /__idempotency/{attempt}) about every key left
// indeterminate, and settles it by the answer. The cases that lock a key
// (drop, reset, client gone, a proxy's 503) must end with 0 double
// executions and no key indeterminate after reconcileBound, the retries
// replaying the one payment; a copy of the request still in flight when
// the upstream answered "not executed" must be refused; and with the
// lookup unreachable the key must stay indeterminate, never released.

const (
	hostReconcile = "reconcile.chaos.test" // lease 2s, no edge cache, on_indeterminate reconcile
	hostRcStorm   = "rcstorm.chaos.test"   // lease 3s, reconcile: the storm's route
	hostRcDead    = "rcdead.chaos.test"    // reconcile with target "dead": nothing listens there
)

// reconcileBound is how long a key may stay indeterminate on a reconcile
// route once everything is up: the bound. The control plane asks
// 1 s after the abandon (--reconcile-delay) on a 500 ms pass.
const reconcileBound = 10 * time.Second

// listKeys is every record in state whose key contains keyPart, walking
// GET /v1/admin/keys/list page by page (bounded).
func listKeys(t testing.TB, state api.State, keyPart string) []api.Record {
	t.Helper()
	var out []api.Record
	cursor := ""
	for range 10_000 {
		q := url.Values{"state": {string(state)}, "limit": {fmt.Sprint(api.MaxListLimit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, err := http.NewRequest(http.MethodGet, "http://"+stk.controlPlane+api.PathAdminKeyList+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", api.PathAdminKeyList, err)
		}
		var page api.KeyList
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %s", api.PathAdminKeyList, resp.Status, body)
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET %s: %s: %v", api.PathAdminKeyList, body, err)
		}
		for _, r := range page.Records {
			if strings.Contains(r.Key, keyPart) {
				out = append(out, r)
			}
		}
		if cursor = page.Cursor; cursor == "" {
			return out
		}
	}
	t.Fatalf("GET %s: no end of the scan after 10000 pages", api.PathAdminKeyList)
	return nil
}

// unresolved is every record whose key contains keyPart that is still
// indeterminate or in progress (a lease the control plane has not yet
// turned indeterminate counts: it is not resolved either).
func unresolved(t testing.TB, keyPart string) []string {
	t.Helper()
	var keys []string
	// In progress first: a record only moves from in progress to
	// indeterminate to settled, so one that moves between the two lists
	// is still seen by the second. The other order missed a record whose
	// abandon landed between the two calls and called it settled.
	for _, st := range []api.State{api.StateInProgress, api.StateIndeterminate} {
		for _, r := range listKeys(t, st, keyPart) {
			keys = append(keys, fmt.Sprintf("%s (%s, reconcile attempts %d, last %q)", r.Key, r.State, r.ReconcileAttempts, r.ReconcileLast))
		}
	}
	sort.Strings(keys)
	return keys
}

// waitReconciled polls until no record of keyPart is unresolved, or
// within has passed; it returns what is left and how long it took.
func waitReconciled(t testing.TB, keyPart string, within time.Duration) ([]string, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		left := unresolved(t, keyPart)
		if len(left) == 0 || time.Since(start) > within {
			return left, time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ledgerCount is how many times the upstream executed label.
func ledgerCount(t testing.TB, label string) int64 {
	t.Helper()
	return ledger(t, stk.upstream)[label]
}

// The four ways of losing an answer after the upstream executed, on a
// reconcile route: each key must be resolved within reconcileBound, and
// its retries replay the payment that ran, once.
func TestReconcileLostAnswers(t *testing.T) {
	showLogsOnFailure(t)
	proxied, _ := sharedReconcileGateway(t)
	for _, tt := range []struct {
		name string
		gw   string
		hdr  map[string]string
		// leave: the client leaves once the upstream executed (the
		// upstream delays its answer).
		leave bool
	}{
		{"drop", "", hdrDrop, false},
		{"reset", "", map[string]string{upstream.HeaderDrop: "reset"}, false},
		{"client gone", "", hdrDelay(3000), true},
		{"proxy 503", proxied.url, hdrDrop, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			showLogsOnFailure(t)
			key := random(t, "rc-")
			label := "rc/" + key
			p := payment{gateway: tt.gw, host: hostReconcile, key: key, auth: random(t, "Bearer rc-"), body: `{"amount":115}`,
				headers: map[string]string{upstream.HeaderLedger: label}}
			for k, v := range tt.hdr {
				p.headers[k] = v
			}
			before := executions(t)
			var first answer
			if tt.leave {
				leave := make(chan struct{})
				q := p
				q.leave = leave
				gone := make(chan answer, 1)
				go func() { gone <- send(t, q) }()
				waitExecuted(t, before)
				close(leave)
				first = <-gone
			} else {
				first = send(t, p)
			}
			if first.err == nil && first.status < 500 {
				t.Fatalf("first request: %v, want no answer or a 5xx (the answer was lost)", first)
			}
			left, took := waitReconciled(t, key, reconcileBound)
			t.Logf("%s: resolved in %v", tt.name, took.Round(time.Millisecond))
			if len(left) > 0 {
				t.Fatalf("still unresolved %v after the lost answer: %v", reconcileBound, left)
			}
			p.headers = map[string]string{upstream.HeaderLedger: label}
			var firstID string
			for i := range 2 {
				retry := mustSend(t, p)
				if retry.status != http.StatusCreated || !retry.replayed() || retry.id() == "" {
					t.Errorf("retry %d: %v, want the payment that ran replayed", i, retry)
				}
				if i == 0 {
					firstID = retry.id()
				} else if retry.id() != firstID {
					t.Errorf("retry %d replays %s, retry 0 %s", i, retry.id(), firstID)
				}
			}
			if n := ledgerCount(t, label); n != 1 {
				t.Errorf("the upstream executed the key %d times, want once", n)
			}
			if got := executions(t) - before; got != 1 {
				t.Errorf("executions +%d, want +1", got)
			}
		})
	}
}

// hdrHold asks the reconcile tests' proxy to hold a request (rcProxy).
const hdrHold = "X-Chaos-Hold"

// rcProxy sits between the reconcile tests' gateway and the upstream. A
// request carrying hdrHold is held until the current hold's release
// closes, then forwarded even though the gateway gave up on it: a copy
// still in flight (queued in a proxy, a slow network) when the upstream
// is asked about its attempt. Any other request is proxied as resetProxy
// does: a reset is answered 503 as Envoy answers it.
type rcProxy struct {
	addr string
	hold atomic.Pointer[hold]
}

// hold is one test's held request.
type hold struct {
	release   chan struct{}
	delivered chan int // the upstream's status for each held request
	held      atomic.Int64
}

// The reconcile tests' gateway (the chaos policy, the stack's control
// plane, the upstream behind an rcProxy), started by the first test that
// needs it and stopped with gateway B: a gateway takes seconds to start.
var (
	rcGatewayMu sync.Mutex
	rcGateway   *gatewayProc
	rcProxyOf   *rcProxy
)

func sharedReconcileGateway(t *testing.T) (*gatewayProc, *rcProxy) {
	t.Helper()
	rcGatewayMu.Lock()
	defer rcGatewayMu.Unlock()
	if rcGateway == nil {
		p := &rcProxy{}
		reset := resetProxyHandler(stk.upstreamAddr)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := p.hold.Load(); h != nil && r.Header.Get(hdrHold) != "" {
				h.forwardLate(w, r, reset)
				return
			}
			reset.ServeHTTP(w, r)
		}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		p.addr = ln.Addr().String()
		g := launchGateway(t, "gateway-reconcile", gatewayOpts{upstream: p.addr})
		gatewayBMu.Lock()
		gatewayBStop = append(gatewayBStop, g.stop, func() { _ = srv.Close() })
		gatewayBMu.Unlock()
		rcGateway, rcProxyOf = g, p
	}
	waitGoverned(t, rcGateway.url)
	return rcGateway, rcProxyOf
}

// holdNext makes p hold the requests that carry hdrHold until the test
// releases them (or ends).
func (p *rcProxy) holdNext(t *testing.T) *hold {
	h := &hold{release: make(chan struct{}), delivered: make(chan int, 16)}
	p.hold.Store(h)
	t.Cleanup(func() {
		p.hold.CompareAndSwap(h, nil)
		h.releaseOnce()
	})
	return h
}

func (h *hold) releaseOnce() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// forwardLate holds r, then sends it on through next, detached from the
// gateway's connection, and reports the upstream's status.
func (h *hold) forwardLate(_ http.ResponseWriter, r *http.Request, next http.Handler) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	h.held.Add(1)
	select {
	case <-h.release:
	case <-time.After(time.Minute): // a bound; the test releases long before
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	out := r.Clone(ctx)
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	rec := &recorder{header: http.Header{}}
	next.ServeHTTP(rec, out)
	h.delivered <- rec.status
}

// The danger reconcile is designed against: the gateway abandons a
// request still on its way to the upstream; the lookup finds nothing and
// the key is released. The upstream's tombstone must refuse the late
// copy, so the payment runs once: the retry's.
func TestReconcileLateCopyIsRefused(t *testing.T) {
	showLogsOnFailure(t)
	gw, proxy := sharedReconcileGateway(t)
	hold := proxy.holdNext(t)
	key := random(t, "rclate-")
	label := "rclate/" + key
	p := payment{gateway: gw.url, host: hostReconcile, key: key, auth: random(t, "Bearer rclate-"), body: `{"amount":116}`,
		headers: map[string]string{upstream.HeaderLedger: label, hdrHold: "1"}}
	before := executions(t)
	leave := make(chan struct{})
	q := p
	q.leave = leave
	gone := make(chan answer, 1)
	go func() { gone <- send(t, q) }()
	for deadline := time.Now().Add(30 * time.Second); hold.held.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the holding proxy within 30s")
		}
	}
	close(leave) // the client gives up; the gateway abandons the key
	if a := <-gone; a.err == nil {
		t.Fatalf("the client was answered while its request was held: %v", a)
	}
	left, took := waitReconciled(t, key, reconcileBound)
	if len(left) > 0 {
		t.Fatalf("still unresolved %v after the client left: %v", reconcileBound, left)
	}
	t.Logf("late copy: the key was released in %v", took.Round(time.Millisecond))
	// The retry, through the stack's gateway (no proxy): it executes.
	p.gateway = ""
	p.headers = map[string]string{upstream.HeaderLedger: label}
	retry := mustSend(t, p)
	if retry.status != http.StatusCreated || retry.replayed() || retry.id() == "" {
		t.Fatalf("retry after the key was released: %v, want 201 executed", retry)
	}
	hold.releaseOnce()
	select {
	case st := <-hold.delivered:
		if st != http.StatusConflict {
			t.Errorf("the late copy was answered %d by the upstream, want 409 (its attempt tombstoned)", st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the late copy never reached the upstream")
	}
	if n := ledgerCount(t, label); n != 1 {
		t.Errorf("the upstream executed the key %d times, want once (the late copy ran too)", n)
	}
	if again := mustSend(t, p); !again.replayed() || again.id() != retry.id() {
		t.Errorf("a later retry: %v, want %s replayed", again, retry.id())
	}
	if got := executions(t) - before; got != 1 {
		t.Errorf("executions +%d, want +1", got)
	}
}

// With the lookup unreachable (the "dead" target, a closed loopback port)
// every lookup fails, and a failed lookup is never "not executed": the key
// stays indeterminate through several backoffs, retries get 409, and the
// payment never runs twice.
func TestReconcileUnreachableKeepsTheKey(t *testing.T) {
	showLogsOnFailure(t)
	key := random(t, "rcdead-")
	label := "rcdead/" + key
	p := payment{host: hostRcDead, key: key, auth: random(t, "Bearer rcdead-"), body: `{"amount":117}`,
		headers: map[string]string{upstream.HeaderLedger: label, upstream.HeaderDrop: "1"}}
	before := executions(t)
	if a := send(t, p); a.err == nil && a.status < 500 {
		t.Fatalf("first request: %v, want no answer or a 5xx", a)
	}
	const wantAttempts = 3 // failed lookups: 1 s, then backoffs of about 1 s and 2 s
	var last api.Record
	for deadline := time.Now().Add(60 * time.Second); last.ReconcileAttempts < wantAttempts; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d lookups within 60s: %+v", last.ReconcileAttempts, last)
		}
		recs := listKeys(t, api.StateIndeterminate, key)
		if len(recs) != 1 {
			// Before the abandon lands the record is in progress; after
			// it, it must stay indeterminate.
			if last.Key != "" || len(listKeys(t, api.StateInProgress, key)) != 1 {
				t.Fatalf("the key is no longer indeterminate after %d failed lookups (records %v): released on a guess", last.ReconcileAttempts, recs)
			}
			continue
		}
		last = recs[0]
	}
	if last.ReconcileLast != api.ReconcileFailed {
		t.Errorf("last lookup %q, want failed (%+v)", last.ReconcileLast, last)
	}
	p.headers = map[string]string{upstream.HeaderLedger: label}
	if retry := mustSend(t, p); !retry.indeterminate() {
		t.Errorf("retry after %d failed lookups: %v, want 409 indeterminate", last.ReconcileAttempts, retry)
	}
	if n := ledgerCount(t, label); n != 1 {
		t.Errorf("the upstream executed the key %d times, want once", n)
	}
	if got := executions(t) - before; got != 1 {
		t.Errorf("executions +%d, want +1", got)
	}
	t.Logf("unreachable lookup: %d failed lookups, the key still indeterminate", last.ReconcileAttempts)
}

// The storm on a reconcile route: 0 double executions, and 0 keys
// indeterminate once the faults end.
func TestStormReconcile(t *testing.T) {
	runStorm(t, hostRcStorm, true)
}
