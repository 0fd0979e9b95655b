package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests run one after another (no t.Parallel): they measure the
// upstream's execution counter before and after.

func TestReplay(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":1000,"currency":"EUR"}`}
	before := executions(t)
	first := mustSend(t, p)
	wantFirst(t, first)
	var got map[string]any
	if err := json.Unmarshal(first.body, &got); err != nil || !strings.HasPrefix(got["id"].(string), "pay_") || got["currency"] != "EUR" {
		t.Fatalf("first answer %s: want the upstream's payment (%v)", first.body, err)
	}
	for i := 0; i < 3; i++ {
		wantReplay(t, first, mustSend(t, p))
	}
	wantExecuted(t, before, 1)
}

func TestCanonicallyEqualBodiesReplay(t *testing.T) {
	showLogsOnFailure(t)
	key, auth := random(t, "k-"), random(t, "Bearer ")
	before := executions(t)
	first := mustSend(t, payment{key: key, auth: auth, body: `{"amount":1000,"currency":"EUR","meta":{"a":1,"b":[1,2]}}`})
	wantFirst(t, first)
	for _, body := range []string{
		`{ "meta" : { "b" : [ 1, 2 ], "a" : 1 }, "currency" : "EUR", "amount" : 1000 }`,
		"{\n\t\"currency\": \"\\u0045UR\",\n\t\"amount\": 1.0e3,\n\t\"meta\": {\"b\": [1.0, 2E0], \"a\": 10e-1}\n}",
	} {
		wantReplay(t, first, mustSend(t, payment{key: key, auth: auth, body: body}))
	}
	wantExecuted(t, before, 1)
}

func TestDifferentPayloadIsRejected(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":1000,"currency":"EUR"}`}
	before := executions(t)
	wantFirst(t, mustSend(t, p))
	p.body = `{"amount":2000,"currency":"EUR"}`
	wantProblem(t, mustSend(t, p), http.StatusUnprocessableEntity)
	wantExecuted(t, before, 1)
}

func TestBadRequests(t *testing.T) {
	showLogsOnFailure(t)
	tests := []struct {
		name string
		p    payment
		want int
	}{
		{"missing key", payment{noKey: true, body: `{"amount":1}`}, http.StatusBadRequest},
		{"key over 255 characters", payment{key: strings.Repeat("k", 256), body: `{"amount":1}`}, http.StatusBadRequest},
		{"invalid JSON", payment{key: random(t, "k-"), body: `{"amount":`}, http.StatusBadRequest},
		{"not JSON at all", payment{key: random(t, "k-"), body: `amount=1`}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.auth = random(t, "Bearer ")
			before := executions(t)
			wantProblem(t, mustSend(t, tt.p), tt.want)
			wantExecuted(t, before, 0)
		})
	}
	// The limit is 255, not less: a key of exactly 255 characters is fine.
	t.Run("key of 255 characters", func(t *testing.T) {
		before := executions(t)
		key := random(t, "k-")
		key += strings.Repeat("k", 255-len(key))
		wantFirst(t, mustSend(t, payment{key: key, auth: random(t, "Bearer "), body: `{"amount":1}`}))
		wantExecuted(t, before, 1)
	})
}

func TestTenantIsolation(t *testing.T) {
	showLogsOnFailure(t)
	key := random(t, "shared-")
	alice := payment{key: key, auth: random(t, "Bearer alice-"), body: `{"amount":100}`}
	bob := payment{key: key, auth: random(t, "Bearer bob-"), body: `{"amount":100}`}
	before := executions(t)
	a1 := mustSend(t, alice)
	wantFirst(t, a1)
	b1 := mustSend(t, bob)
	wantFirst(t, b1) // bob's first use of the key executes: it is not alice's
	if string(a1.body) == string(b1.body) {
		t.Errorf("alice and bob got the same payment %s", a1.body)
	}
	wantReplay(t, a1, mustSend(t, alice))
	wantReplay(t, b1, mustSend(t, bob))
	wantExecuted(t, before, 2)
}

func TestConcurrentDuplicatesExecuteOnce(t *testing.T) {
	showLogsOnFailure(t)
	const n = 50
	// The delay keeps the first in flight while the others arrive.
	p := payment{key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":42}`,
		headers: map[string]string{"X-Demo-Delay-Ms": "300"}}
	before := executions(t)
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = send(t, p)
		}()
	}
	close(start)
	wg.Wait()
	var executed, replayed, conflicts, shed int
	var original answer
	for _, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("no answer: %v", a.err)
		case a.status == http.StatusCreated && !a.replayed():
			executed++
			original = a
		case a.status == http.StatusCreated:
			replayed++
		case a.status == http.StatusConflict:
			conflicts++
			if a.header.Get("Retry-After") == "" {
				t.Errorf("409 without Retry-After: %v", a)
			}
		case a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") != "":
			// Shed by the control plane's admission control (reserves get
			// 48 of its 64 slots by default): a burst may meet it, and a
			// shed request runs nothing.
			shed++
		default:
			t.Errorf("unexpected answer %v", a)
		}
	}
	t.Logf("%d concurrent duplicates: %d executed, %d replayed, %d got 409, %d shed (503)", n, executed, replayed, conflicts, shed)
	if executed != 1 {
		t.Fatalf("%d answers executed, want exactly 1", executed)
	}
	for _, a := range answers {
		if a.err == nil && a.status == http.StatusCreated && a.replayed() && string(a.body) != string(original.body) {
			t.Errorf("a replay %s differs from the original %s", a.body, original.body)
		}
	}
	delete(p.headers, "X-Demo-Delay-Ms")
	wantReplay(t, original, mustSend(t, p))
	wantExecuted(t, before, 1)
}

// A response the upstream marks not executed (the demo's X-Demo-Status
// sets idempotency-not-executed: 1) and the statuses that say the request
// was not processed (408, 425, 429) free the key: a transient error never
// burns it. The mark is stripped before the client sees it.
func TestTransactionalFailureReleasesTheKey(t *testing.T) {
	showLogsOnFailure(t)
	for _, tt := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"503 marked not executed", map[string]string{"X-Demo-Status": "503"}, http.StatusServiceUnavailable},
		{"500 marked not executed", map[string]string{"X-Demo-Status": "500"}, http.StatusInternalServerError},
		{"429", map[string]string{"X-Demo-Status": "429"}, http.StatusTooManyRequests},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := payment{key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":7}`, headers: tt.headers}
			before := executions(t)
			a := mustSend(t, p)
			if a.status != tt.status || a.replayed() {
				t.Fatalf("with %v: %v, want the upstream's %d", tt.headers, a, tt.status)
			}
			if v := a.header.Values("Idempotency-Not-Executed"); len(v) != 0 {
				t.Errorf("the client got the not-executed mark %q; the filter strips it", v)
			}
			wantExecuted(t, before, 0)
			p.headers = nil
			retry := mustSend(t, p)
			wantFirst(t, retry) // the key was released: the retry runs
			wantReplay(t, retry, mustSend(t, p))
			wantExecuted(t, before, 1)
		})
	}
}

// An upstream that executed and then answered an error: a 500 (or any
// other 5xx but 502, 503, 504) is stored and replayed, so a retry never
// runs it twice; 502, 503 and 504 are what a proxy between the gateway
// and the app answers after the app may have run: indeterminate, 409 with
// its own problem type.
func TestErrorAfterExecutionNeverExecutesTwice(t *testing.T) {
	showLogsOnFailure(t)
	for _, tt := range []struct {
		status int
		stored bool
	}{
		{500, true}, {501, true}, {507, true},
		{502, false}, {503, false}, {504, false},
	} {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			p := payment{key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":8}`,
				headers: map[string]string{"X-Demo-Fail-After": fmt.Sprint(tt.status)}}
			before := executions(t)
			first := mustSend(t, p)
			if first.status != tt.status || first.replayed() {
				t.Fatalf("with X-Demo-Fail-After %d: %v, want the upstream's %d", tt.status, first, tt.status)
			}
			p.headers = nil
			retry := mustSend(t, p)
			if tt.stored {
				wantReplay(t, first, retry)
			} else {
				wantIndeterminate(t, retry)
			}
			wantExecuted(t, before, 1)
		})
	}
}

func TestDroppedConnectionNeverExecutesTwice(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":9}`,
		headers: map[string]string{"X-Demo-Drop": "1"}}
	before := executions(t)
	if a := send(t, p); a.err == nil && a.status < 500 {
		t.Fatalf("upstream dropped the connection, gateway answered %v; want a 5xx or no answer", a)
	}
	wantExecuted(t, before, 1)
	p.headers = nil // a retry without the control header would execute if let through
	for i := 0; i < 3; i++ {
		a := send(t, p)
		if a.err == nil && a.status < 300 {
			t.Fatalf("retry %d after an indeterminate outcome: %v; want 409 or the gateway's error", i, a)
		}
		wantIndeterminate(t, a)
	}
	wantExecuted(t, before, 1)
}

func faultCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestControlPlaneKilled(t *testing.T) {
	showLogsOnFailure(t)
	ctx := faultCtx(t)
	auth := random(t, "Bearer ")
	done := payment{key: random(t, "k-"), auth: auth, body: `{"amount":11}`}
	first := mustSend(t, done)
	wantFirst(t, first)

	if err := tgt.faults.KillControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tgt.faults.StartControlPlane(faultCtx(t)); err != nil {
			t.Fatalf("starting the control plane again: %v", err)
		}
		waitGoverned(t)
	})
	before := executions(t)

	// Completed keys: replayed by the gateway's edge cache.
	wantReplay(t, first, mustSend(t, done))
	// A new key on the fail-closed route: 503 + Retry-After, not executed.
	closed := mustSend(t, payment{key: random(t, "k-"), auth: auth, body: `{"amount":12}`})
	wantProblem(t, closed, http.StatusServiceUnavailable)
	if closed.header.Get("Retry-After") == "" {
		t.Errorf("fail-closed 503 without Retry-After")
	}
	wantExecuted(t, before, 0)
	// A new key on the fail-open route: passes through, ungoverned.
	open := mustSend(t, payment{host: hostFailOpen, key: random(t, "k-"), auth: auth, body: `{"amount":13}`})
	wantFirst(t, open)
	wantExecuted(t, before, 1)
}

// The stack's Redis persists (append-only file; see e2e/README.md): a
// restart drops connections and loaded scripts but keeps records, so a key
// completed before is replayed after by the control plane itself (the
// no-edge-cache route), and new keys work.
func TestRedisRestarted(t *testing.T) {
	showLogsOnFailure(t)
	ctx := faultCtx(t)
	auth := random(t, "Bearer ")
	done := payment{host: hostNoEdge, key: random(t, "k-"), auth: auth, body: `{"amount":21}`}
	first := mustSend(t, done)
	wantFirst(t, first)

	if err := tgt.faults.RestartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	waitGoverned(t)
	before := executions(t)
	wantReplay(t, first, mustSend(t, done))
	fresh := payment{host: hostNoEdge, key: random(t, "k-"), auth: auth, body: `{"amount":22}`}
	a := mustSend(t, fresh)
	wantFirst(t, a)
	wantReplay(t, a, mustSend(t, fresh))
	wantExecuted(t, before, 1)
}

// A lease outlives the control-plane process that granted it: a request in
// flight across a control-plane restart completes with its fencing token,
// and its retry is replayed by the control plane (no-edge-cache route).
func TestControlPlaneRestartedWhileHoldingLease(t *testing.T) {
	showLogsOnFailure(t)
	ctx := faultCtx(t)
	p := payment{host: hostNoEdge, key: random(t, "k-"), auth: random(t, "Bearer "), body: `{"amount":31}`,
		headers: map[string]string{"X-Demo-Delay-Ms": "8000"}}
	before := executions(t)
	inflight := make(chan answer, 1)
	go func() { inflight <- send(t, p) }()

	// Wait until the upstream runs it: the lease is now held.
	deadline := time.Now().Add(30 * time.Second)
	for executions(t) == before {
		if time.Now().After(deadline) {
			t.Fatal("the delayed request never reached the upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.headers = nil
	if a := mustSend(t, p); a.status != http.StatusConflict {
		t.Errorf("duplicate while the lease is held: %v, want 409", a)
	}
	if err := tgt.faults.RestartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	var first answer
	select {
	case first = <-inflight:
	case <-ctx.Done():
		t.Fatal("the in-flight request never finished")
	}
	wantFirst(t, first)
	wantReplay(t, first, mustSend(t, p))
	wantExecuted(t, before, 1)
}
