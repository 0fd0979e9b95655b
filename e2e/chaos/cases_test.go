package chaos

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/plugin/policy"
)

// The tests run one after another (no t.Parallel): they compare the
// upstream's execution counter before and after, and some kill the
// control plane.

// The chaos policy must be one the filter accepts, with the routes the
// cases address by Host.
func TestChaosPolicyParses(t *testing.T) {
	raw, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", policyFile, err)
	}
	for _, tt := range []struct {
		host   string
		lease  time.Duration
		mode   policy.FailureMode
		indet  policy.OnIndeterminate
		target string
	}{
		{hostDefault, 30 * time.Second, policy.FailClosed, policy.Lock, ""},
		{hostLock, 2 * time.Second, policy.FailClosed, policy.Lock, ""},
		{hostScoped, 30 * time.Second, policy.FailClosed, policy.Lock, ""},
		{hostWaitOpen, 20 * time.Second, policy.FailOpen, policy.Lock, ""},
		{hostStorm, 3 * time.Second, policy.FailClosed, policy.Lock, ""},
		{hostReconcile, 2 * time.Second, policy.FailClosed, policy.Reconcile, ""},
		{hostRcStorm, 3 * time.Second, policy.FailClosed, policy.Reconcile, ""},
		{hostRcDead, 2 * time.Second, policy.FailClosed, policy.Reconcile, "dead"},
	} {
		r := cfg.Match(tt.host, "/payments", "POST")
		if r == nil {
			t.Errorf("host %q: POST /payments not governed", tt.host)
			continue
		}
		if r.Lease != tt.lease || r.FailureMode != tt.mode || r.OnIndeterminate != tt.indet || (tt.target != "" && r.ReconcileTarget != tt.target) {
			t.Errorf("host %q: lease %v, failure_mode %s, on_indeterminate %s, target %q; want %v, %s, %s, %q",
				tt.host, r.Lease, r.FailureMode, r.OnIndeterminate, r.ReconcileTarget, tt.lease, tt.mode, tt.indet, tt.target)
		}
	}
}

// wantNotExecutedAgain fails when a retry after a forwarded request ran
// the operation again: executions moved by more than once since before,
// or the retry carries a payment id other than the first one's.
func wantNotExecutedAgain(t *testing.T, before int64, firstID string, retry answer) {
	t.Helper()
	got := executions(t) - before
	if got != 1 {
		t.Errorf("executions +%d, want +1: the retry ran the operation again (first id %q, retry %v)", got, firstID, retry)
	}
	if id := retry.id(); id != "" && firstID != "" && id != firstID {
		t.Errorf("the retry carries payment %s, the first request %s: two payments for one key", id, firstID)
	}
}

// Case 1: the client gives up while the upstream runs, and the control
// plane is down at that moment: the filter's abandon is lost. When the
// lease ends, the retry must get the indeterminate problem (or, should the
// filter have learnt the outcome after all, its replay), never run again.
func TestCase01LostIndeterminate(t *testing.T) {
	showLogsOnFailure(t)
	restartControlPlaneAfter(t)
	p := payment{host: hostLock, key: random(t, "c1-"), auth: random(t, "Bearer c1-"), body: `{"amount":101}`, headers: hdrDelay(3000)}
	before := executions(t)
	gone := make(chan answer, 1)
	// The client leaves once the upstream runs and the control plane is
	// down.
	leave := make(chan struct{})
	q := p
	q.leave = leave
	go func() { gone <- send(t, q) }()
	waitExecuted(t, before)
	killControlPlane(t)
	close(leave)
	if a := <-gone; a.err == nil {
		t.Logf("the client had an answer before it left: %v", a)
	}
	startControlPlane(t)
	// The 2 s lease, counted from the reserve, has ended by now or soon:
	// wait it out (a bound, not a measurement).
	time.Sleep(2500 * time.Millisecond)
	p.headers = nil
	retry := mustSend(t, p)
	wantNotExecutedAgain(t, before, "", retry)
	if !retry.indeterminate() && !(retry.replayed() && retry.id() != "") {
		t.Errorf("retry after the lost abandon and the lease's end: %v, want 409 with the indeterminate problem type", retry)
	}
}

// Case 2: the control plane is down when the upstream answers: the
// client gets 201, the one complete fails. After the lease, the retry
// must replay that payment (the complete landed later) or get the
// indeterminate problem; it must never run again.
func TestCase02LostComplete(t *testing.T) {
	showLogsOnFailure(t)
	restartControlPlaneAfter(t)
	p := payment{host: hostLock, key: random(t, "c2-"), auth: random(t, "Bearer c2-"), body: `{"amount":102}`, headers: hdrDelay(1000)}
	before := executions(t)
	first := make(chan answer, 1)
	go func() { first <- send(t, p) }()
	waitExecuted(t, before)
	killControlPlane(t)
	a := <-first
	if a.err != nil || a.status != http.StatusCreated {
		t.Fatalf("first request: %v, want the upstream's 201", a)
	}
	startControlPlane(t)
	time.Sleep(2500 * time.Millisecond) // the 2 s lease has ended
	p.headers = nil
	retry := mustSend(t, p)
	wantNotExecutedAgain(t, before, a.id(), retry)
	switch {
	case retry.status == http.StatusCreated && retry.replayed() && retry.id() == a.id():
	case retry.indeterminate():
	default:
		t.Errorf("retry after the lost complete and the lease's end: %v, want a replay of %s or 409 indeterminate", retry, a.id())
	}
}

// Case 3: gateway → an L7 proxy → app. The app executes and resets; the
// proxy answers 503 as Envoy does. The retry must not run again.
func TestCase03ProxyAnswers503AfterExecution(t *testing.T) {
	showLogsOnFailure(t)
	gw := startGateway(t, "gateway-behind-proxy", gatewayOpts{upstream: resetProxy(t, stk.upstreamAddr)})
	p := payment{gateway: gw.url, key: random(t, "c3-"), auth: random(t, "Bearer c3-"), body: `{"amount":103}`, headers: hdrDrop}
	before := executions(t)
	first := mustSend(t, p)
	if first.status != http.StatusServiceUnavailable || !strings.Contains(string(first.body), "reset before headers") {
		t.Fatalf("first request through the proxy: %v, want the proxy's 503 %q", first, envoyResetBody)
	}
	p.headers = nil
	for i := range 3 {
		retry := mustSend(t, p)
		if retry.status < 300 || executions(t)-before != 1 {
			t.Fatalf("retry %d after the proxy's 503: %v; executions +%d, want +1: a 503 from a proxy released the key and the payment ran twice", i, retry, executions(t)-before)
		}
		if !retry.indeterminate() {
			t.Errorf("retry %d after the proxy's 503: %v, want 409 with the indeterminate problem type", i, retry)
		}
	}
}

// Case 4: the app commits, then answers 500. The retry must get that
// stored 500 back, not order twice.
func TestCase04ErrorAfterCommit(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{key: random(t, "c4-"), auth: random(t, "Bearer c4-"), body: `{"amount":104}`, headers: hdrFailAfter(500)}
	before := executions(t)
	first := mustSend(t, p)
	if first.status != http.StatusInternalServerError || first.id() == "" {
		t.Fatalf("first request: %v, want the upstream's 500 with the executed payment's id", first)
	}
	p.headers = nil
	retry := mustSend(t, p)
	wantNotExecutedAgain(t, before, first.id(), retry)
	if retry.status != http.StatusInternalServerError || !retry.replayed() || retry.id() != first.id() {
		t.Errorf("retry after an error after commit: %v, want the stored 500 of %s replayed", retry, first.id())
	}
}

// Case 4b, the other side: a response the app marks not executed
// (X-Demo-Status, header idempotency-not-executed) frees the key: a
// transient error never burns it. The mark never reaches the client.
func TestCase04MarkedNotExecutedReleases(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{key: random(t, "c4b-"), auth: random(t, "Bearer c4b-"), body: `{"amount":114}`,
		headers: map[string]string{"X-Demo-Status": "503"}}
	before := executions(t)
	first := mustSend(t, p)
	if first.status != http.StatusServiceUnavailable || first.replayed() {
		t.Fatalf("first request: %v, want the upstream's 503", first)
	}
	if v := first.header.Values("Idempotency-Not-Executed"); len(v) != 0 {
		t.Errorf("the client got the not-executed mark %q: the filter must strip it", v)
	}
	p.headers = nil
	retry := mustSend(t, p)
	if retry.status != http.StatusCreated || retry.replayed() {
		t.Errorf("retry after a response marked not executed: %v, want 201 executed (the key was released)", retry)
	}
	if got := executions(t) - before; got != 1 {
		t.Errorf("executions +%d, want +1", got)
	}
}

// Case 5: the route's principal (the x-user header) is absent. Mallory,
// with Alice's key and body, must never get Alice's response.
func TestCase05MissingPrincipal(t *testing.T) {
	showLogsOnFailure(t)
	key := random(t, "c5-")
	alice := payment{host: hostScoped, key: key, auth: "Bearer alice", body: `{"amount":105,"to":"alice's landlord"}`}
	mallory := alice
	mallory.auth = "Bearer mallory"
	before := executions(t)
	a := mustSend(t, alice)
	m := mustSend(t, mallory)
	if a.id() != "" && m.id() == a.id() {
		t.Errorf("Mallory got Alice's payment %s: %v", a.id(), m)
	}
	for _, x := range []struct {
		who string
		a   answer
	}{{"Alice", a}, {"Mallory", m}} {
		if x.a.status != http.StatusUnauthorized || x.a.problemType() == "" {
			t.Errorf("%s without the x-user principal: %v, want 401 problem+json", x.who, x.a)
		}
	}
	// With another body Mallory must not learn that the key exists.
	mallory.body = `{"amount":1}`
	if m2 := mustSend(t, mallory); m2.status == http.StatusUnprocessableEntity {
		t.Errorf("Mallory with another body: %v: told that Alice's key exists", m2)
	}
	if got := executions(t) - before; got != 0 {
		t.Errorf("executions +%d, want +0: requests without a principal ran", got)
	}
}

// Case 6: one principal, key and body on two hosts behind one gateway:
// the second API must not get the first's stored response.
func TestCase06AnotherHostSameKey(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{host: "api-a.chaos.test", key: random(t, "c6-"), auth: random(t, "Bearer c6-"), body: `{"amount":106}`}
	before := executions(t)
	a := mustSend(t, p)
	if a.status != http.StatusCreated || a.replayed() {
		t.Fatalf("api-a: %v, want 201 executed", a)
	}
	p.host = "api-b.chaos.test"
	b := mustSend(t, p)
	if b.replayed() || (a.id() != "" && b.id() == a.id()) {
		t.Errorf("api-b got api-a's stored response %s: %v", a.id(), b)
	}
	if !(b.status == http.StatusCreated && executions(t)-before == 2) && b.status != http.StatusUnprocessableEntity {
		t.Errorf("api-b: %v (executions +%d), want 201 executed separately (+2) or 422", b, executions(t)-before)
	}
}

// Case 7: two account numbers that one double cannot tell apart: the
// second request must be refused (422), not answered with the first's.
func TestCase07LargeIntegers(t *testing.T) {
	showLogsOnFailure(t)
	p := payment{key: random(t, "c7-"), auth: random(t, "Bearer c7-"), body: `{"account":1234567890123456789,"amount":107}`}
	before := executions(t)
	first := mustSend(t, p)
	if first.status != http.StatusCreated {
		t.Fatalf("first: %v, want 201", first)
	}
	p.body = `{"account":1234567890123456790,"amount":107}`
	second := mustSend(t, p)
	if second.replayed() {
		t.Errorf("account ...790 was answered with account ...789's payment %s: %v", first.id(), second)
	}
	if second.status != http.StatusUnprocessableEntity {
		t.Errorf("another account under the same key: %v, want 422", second)
	}
	if got := executions(t) - before; got != 1 {
		t.Errorf("executions +%d, want +1", got)
	}
}

// Case 8: the control plane answers "acquired" after the client left.
// The key must not stay locked for the whole lease (30 s) with nothing
// executed: a retry soon after executes.
func TestCase08ClientGoneBeforeReserveAnswer(t *testing.T) {
	showLogsOnFailure(t)
	slow := startSlowControlPlane(t)
	gw := startGateway(t, "gateway-slow-controlplane", gatewayOpts{controlPlane: slow.addr})
	waitGoverned(t, gw.url)
	p := payment{gateway: gw.url, key: random(t, "c8-"), auth: random(t, "Bearer c8-"), body: `{"amount":108}`}
	before := executions(t)
	slow.slow.Store(int64(time.Second))
	gone := p
	gone.timeout = 200 * time.Millisecond // under the held-back answer, under the policy's 2 s callout timeout
	if a := send(t, gone); a.err == nil {
		t.Fatalf("the client was answered before the reserve answer came back: %v", a)
	}
	for deadline := time.Now().Add(10 * time.Second); slow.delivered.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the held-back reserve answer was never delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	slow.slow.Store(0)
	if got := executions(t) - before; got != 0 {
		t.Fatalf("executions +%d after the client left before the reserve answer, want +0", got)
	}
	// Retries for 10 s, a third of the 30 s lease: the key must be free
	// again well before the lease ends.
	var last answer
	var conflicts int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		last = mustSend(t, p)
		if last.status != http.StatusConflict {
			break
		}
		conflicts++
		time.Sleep(200 * time.Millisecond)
	}
	if last.status != http.StatusCreated || last.replayed() {
		t.Errorf("retry after the client left before the reserve answer: %v after %d 409s over 10s with executions +%d; want 201 executed (the late acquired released at once)",
			last, conflicts, executions(t)-before)
	}
	if got := executions(t) - before; got != 1 {
		t.Errorf("executions +%d, want +1", got)
	}
}

// Case 9: on_in_progress wait with failure_mode open. Once the control
// plane said "in progress", a failed poll must never forward the held
// duplicate, whatever failure_mode says.
func TestCase09WaitThenControlPlaneKilled(t *testing.T) {
	showLogsOnFailure(t)
	restartControlPlaneAfter(t)
	const dups = 20
	p := payment{host: hostWaitOpen, key: random(t, "c9-"), auth: random(t, "Bearer c9-"), body: `{"amount":109}`, headers: hdrDelay(4000)}
	before := executions(t)
	first := make(chan answer, 1)
	go func() { first <- send(t, p) }()
	waitExecuted(t, before)
	inProgressBefore := reserveOutcomes(t, "in_progress")
	d := p
	d.headers = nil
	answers := make([]answer, dups)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = send(t, d) }()
	}
	// Every duplicate has been told "in progress" and their shared polls
	// (one per VM, from 10 ms, backing off to 100 ms: 10 come within
	// about 250 ms on two VMs, long after the duplicates' own reserves)
	// are under way: then the control plane dies. Bounded.
	for deadline := time.Now().Add(20 * time.Second); reserveOutcomes(t, "in_progress")-inProgressBefore < dups+10; {
		if time.Now().After(deadline) {
			t.Fatalf("the duplicates were not all waiting within 20s (in_progress answers +%d)", reserveOutcomes(t, "in_progress")-inProgressBefore)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killControlPlane(t)
	wg.Wait()
	a := <-first
	got := executions(t) - before
	var forwarded []string
	for _, x := range answers {
		if x.err == nil && x.status == http.StatusCreated && !x.replayed() {
			forwarded = append(forwarded, x.id())
		}
	}
	if got != 1 || len(forwarded) > 0 {
		t.Errorf("executions +%d, want +1: %d of %d waiting duplicates were forwarded when the control plane died (payments %v; the first: %v)",
			got, len(forwarded), dups, forwarded, a)
	}
}

// reserveOutcomes reads the control plane's count of reserve answers
// with outcome from /metrics (0 when none yet).
func reserveOutcomes(t testing.TB, outcome string) int64 {
	t.Helper()
	resp, err := client.Get("http://" + stk.controlPlane + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "idemgate_operations_total{") || !strings.Contains(line, `op="reserve"`) || !strings.Contains(line, `outcome="`+outcome+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		total += int64(v)
	}
	return total
}

// Case 10: an operator deletes a record that gateway A holds in its edge
// cache. After the documented bound, the two gateways must give the same
// answer for the key, and A must not replay the deleted response.
func TestCase10StaleEdgeAfterOperatorDelete(t *testing.T) {
	showLogsOnFailure(t)
	b := sharedGatewayB(t)
	key := random(t, "c10-")
	p := payment{key: key, auth: random(t, "Bearer c10-"), body: `{"amount":110}`}
	before := executions(t)
	first := mustSend(t, p) // through A, the stack's gateway: its edge cache holds the record
	if first.status != http.StatusCreated {
		t.Fatalf("first: %v, want 201", first)
	}
	if r := mustSend(t, p); !r.replayed() {
		t.Fatalf("replay through A: %v", r)
	}
	scope, k := recordOf(t, key)
	out := idemctl(t, "keys", "delete", "--scope", scope, "--key", k, "--json")
	if !strings.Contains(out, `"deleted"`) {
		t.Fatalf("idemctl keys delete: %s, want effect deleted", out)
	}
	time.Sleep(edgeBound)
	p2 := p
	p2.body = `{"amount":220}`
	onA := mustSend(t, p2)
	p2.gateway = b.url
	onB := mustSend(t, p2)
	agree := onA.status == http.StatusCreated && !onA.replayed() && onB.replayed() && onB.id() == onA.id()
	if !agree {
		t.Errorf("after the operator's delete and %v (bound: api.EdgeEpochPoll + the control-plane timeout), another payload: gateway A %v, gateway B %v; want A to execute and B to replay it",
			edgeBound, onA, onB)
	}
	p.gateway = ""
	if again := mustSend(t, p); again.replayed() && again.id() == first.id() {
		t.Errorf("gateway A replayed the deleted payment %s: %v", first.id(), again)
	}
	if got := executions(t) - before; got != 2 {
		t.Errorf("executions +%d, want +2 (the first payload, then the second once)", got)
	}
}

// Case 11: a response larger than the proxy's buffer, on a route whose
// max_stored_response_bytes is above it: whatever the client gets, a
// retry never replays a chimera (the upstream's status and headers with
// the proxy's body), and nothing runs twice.
func TestCase11ResponseLargerThanBuffer(t *testing.T) {
	showLogsOnFailure(t)
	const buffer = bufferLimitB
	gw := sharedGatewayB(t)
	p := payment{gateway: gw.url, key: random(t, "c11-"), auth: random(t, "Bearer c11-"), body: `{"amount":111}`,
		headers: map[string]string{"X-Demo-Pad-Bytes": strconv.Itoa(4 * buffer)}}
	before := executions(t)
	first := send(t, p)
	t.Logf("first answer: %v", first)
	p.headers = nil
	// The proxy's reply goes to the client past the filter (Envoy's
	// sendDirectLocalReply) and the stream then ends: the filter's abandon
	// leaves from the plugin's tick after that, so a retry may find the key
	// in progress for a moment (nothing runs meanwhile). Wait for it to
	// settle, boundedly.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if a := mustSend(t, p); a.problemType() != "urn:idemgate:problem:in-progress" {
			break
		}
	}
	for i := range 2 {
		retry := mustSend(t, p)
		genuine := retry.status == http.StatusCreated && retry.replayed() && retry.id() != "" && len(retry.body) > 4*buffer
		if retry.status < 300 && !genuine {
			t.Errorf("retry %d: %v: a chimera, the upstream's status without its body", i, retry)
		}
		if !genuine && !retry.indeterminate() {
			t.Errorf("retry %d: %v, want the whole stored response replayed or 409 indeterminate", i, retry)
		}
	}
	if got := executions(t) - before; got != 1 {
		t.Errorf("executions +%d, want +1", got)
	}
}

// Case 12: the upstream executed and dropped the connection: the key is
// indeterminate. A retry gets the indeterminate problem type (retrying
// will not help), never "in progress" with a Retry-After of the record's
// whole TTL; and a waiter on a wait route stops at once with the same.
func TestCase12IndeterminateIsNotInProgress(t *testing.T) {
	for _, tt := range []struct{ name, host string }{
		{"conflict route", hostDefault},
		{"wait route", hostWaitOpen},
	} {
		t.Run(tt.name, func(t *testing.T) {
			showLogsOnFailure(t)
			p := payment{host: tt.host, key: random(t, "c12-"), auth: random(t, "Bearer c12-"), body: `{"amount":112}`, headers: hdrDrop}
			before := executions(t)
			if a := send(t, p); a.err == nil && a.status < 500 {
				t.Fatalf("the upstream dropped the connection; the gateway answered %v", a)
			}
			p.headers = nil
			retry := mustSend(t, p)
			if !retry.indeterminate() {
				t.Errorf("retry of an indeterminate key: %v (type %q), want 409 with the indeterminate problem type", retry, retry.problemType())
			}
			if ra := retry.header.Get("Retry-After"); ra != "" {
				if s, err := strconv.Atoi(ra); err != nil || s > 30 {
					t.Errorf("retry of an indeterminate key: Retry-After %q: retrying will not help, so no Retry-After beyond a lease (30 s)", ra)
				}
			}
			if got := executions(t) - before; got != 1 {
				t.Errorf("executions +%d, want +1", got)
			}
		})
	}
}
