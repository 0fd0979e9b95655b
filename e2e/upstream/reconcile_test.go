package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// The upstream's side of the reconcile contract (controlplane/README.md),
// through HTTP as the control plane and the gateway reach it.

// started is the Options.Started of these tests' servers: before every
// query's CreatedAt, so that only the "unknown" test meets an older one.
var started = time.Now().Add(-time.Hour)

func newReconcileServer(t *testing.T, token string) (*Server, string) {
	t.Helper()
	s := New(nil, Options{ReconcileToken: token, Started: started})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// query is one lookup: POST /__idempotency/{attempt}.
type query struct {
	attempt string
	body    string // default: a valid ReconcileQuery for attempt
	dryRun  bool
	created time.Time // default: now
	auth    string
}

func ask(t *testing.T, base string, q query) (int, api.ReconcileAnswer, string) {
	t.Helper()
	body := q.body
	if body == "" {
		created := q.created
		if created.IsZero() {
			created = time.Now()
		}
		b, err := json.Marshal(api.ReconcileQuery{Attempt: q.attempt, Key: "k-" + q.attempt, Scope: "s", Fingerprint: "f", CreatedAt: created, DryRun: q.dryRun})
		if err != nil {
			t.Fatal(err)
		}
		body = string(b)
	}
	req, err := http.NewRequest(http.MethodPost, base+PathReconcile+url.PathEscape(q.attempt), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if q.auth != "" {
		req.Header.Set("Authorization", q.auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("lookup %s: %v", q.attempt, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var a api.ReconcileAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("lookup %s: answer %s: %v", q.attempt, raw, err)
		}
		if err := api.ValidateReconcileAnswer(a); err != nil {
			t.Errorf("lookup %s: answer %s is not one the control plane accepts: %v", q.attempt, raw, err)
		}
	}
	return resp.StatusCode, a, string(raw)
}

func withAttempt(id string, hdr map[string]string) map[string]string {
	h := map[string]string{HeaderAttempt: id, "Idempotency-Key": "k-" + id}
	for k, v := range hdr {
		h[k] = v
	}
	return h
}

// An executed attempt is answered "executed" with the 201 the payment
// produced — also when its answer failed (X-Demo-Fail-After) or never left
// (X-Demo-Drop) — and a retry of the same attempt does not run again.
func TestReconcileExecuted(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  map[string]string
	}{
		{"answered", nil},
		{"delayed", map[string]string{HeaderDelay: "10"}},
		{"fail after", map[string]string{HeaderFailAfter: "502"}},
		{"drop", map[string]string{HeaderDrop: "1"}},
		{"reset", map[string]string{HeaderDrop: "reset"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, base := newReconcileServer(t, "")
			id := "7." + strings.ReplaceAll(tt.name, " ", "-")
			resp, body, _ := post(t, base, `{"amount":5,"currency":"EUR"}`, withAttempt(id, tt.hdr))
			if s.Executions() != 1 {
				t.Fatalf("executions %d, want 1", s.Executions())
			}
			status, a, raw := ask(t, base, query{attempt: id})
			if status != http.StatusOK || a.Outcome != api.ReconcileExecuted || a.Response == nil {
				t.Fatalf("lookup: %d %s, want executed with the response", status, raw)
			}
			r := a.Response
			var pay map[string]any
			if err := json.Unmarshal(r.Body, &pay); err != nil || r.Status != http.StatusCreated || pay["id"] != "pay_1" || pay["amount"] != 5.0 {
				t.Errorf("stored response %d %s (%v), want the 201 of pay_1", r.Status, r.Body, err)
			}
			if len(r.Headers) != 1 || !strings.EqualFold(r.Headers[0][0], "Content-Type") || r.Headers[0][1] != "application/json" {
				t.Errorf("stored headers %v, want Content-Type: application/json", r.Headers)
			}
			if resp != nil && resp.StatusCode == http.StatusCreated && !bytes.Equal(body, r.Body) {
				t.Errorf("stored body %s differs from the answer sent %s", r.Body, body)
			}
			// The same attempt again: the attempt id's uniqueness keeps it
			// from running twice; the recorded answer comes back.
			resp2, body2, err := post(t, base, `{"amount":5,"currency":"EUR"}`, withAttempt(id, nil))
			if err != nil || resp2.StatusCode != http.StatusCreated || !bytes.Equal(body2, r.Body) || s.Executions() != 1 {
				t.Errorf("same attempt again: %v %s (%v), executions %d; want the recorded 201, still 1 execution", resp2, body2, err, s.Executions())
			}
		})
	}
}

// A lookup of an attempt the upstream never saw tombstones it: the answer
// is "not executed", and a copy of the request arriving later is refused,
// marked not executed, without running. A new attempt runs.
func TestReconcileNotExecutedTombstones(t *testing.T) {
	s, base := newReconcileServer(t, "")
	status, a, raw := ask(t, base, query{attempt: "3.late"})
	if status != http.StatusOK || a.Outcome != api.ReconcileNotExecuted || a.Response != nil {
		t.Fatalf("lookup of an unseen attempt: %d %s, want not_executed", status, raw)
	}
	resp, body, err := post(t, base, `{"amount":1}`, withAttempt("3.late", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusConflict || resp.Header.Get(HeaderNotExecuted) != "1" {
		t.Errorf("late copy of a tombstoned attempt: %d %s (%s %q), want 409 marked not executed", resp.StatusCode, body, HeaderNotExecuted, resp.Header.Get(HeaderNotExecuted))
	}
	if s.Executions() != 0 || len(s.Ledger()) != 0 {
		t.Errorf("executions %d after the tombstoned copy, want 0", s.Executions())
	}
	if status, a, raw = ask(t, base, query{attempt: "3.late"}); a.Outcome != api.ReconcileNotExecuted {
		t.Errorf("second lookup: %d %s, want not_executed again", status, raw)
	}
	// The retry, with its own attempt.
	resp, body, err = post(t, base, `{"amount":1}`, withAttempt("4.retry", nil))
	if err != nil || resp.StatusCode != http.StatusCreated || s.Executions() != 1 {
		t.Errorf("a new attempt: %v %s (%v), executions %d; want 201, 1", resp, body, err, s.Executions())
	}
}

// A dry run answers without writing: the attempt may still execute, and
// is then answered "executed".
func TestReconcileDryRunWritesNothing(t *testing.T) {
	s, base := newReconcileServer(t, "")
	status, a, raw := ask(t, base, query{attempt: "5.dry", dryRun: true})
	if status != http.StatusOK || a.Outcome != api.ReconcileNotExecuted {
		t.Fatalf("dry lookup: %d %s, want not_executed", status, raw)
	}
	if resp, body, err := post(t, base, `{"amount":2}`, withAttempt("5.dry", nil)); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("the attempt after a dry lookup: %v %s (%v), want 201: the dry run tombstoned it", resp, body, err)
	}
	if _, a, raw = ask(t, base, query{attempt: "5.dry", dryRun: true}); a.Outcome != api.ReconcileExecuted || a.Response == nil {
		t.Errorf("dry lookup after the execution: %s, want executed", raw)
	}
	if s.Executions() != 1 {
		t.Errorf("executions %d, want 1", s.Executions())
	}
}

// A lookup and the request of the same attempt, at once: exactly one of
// them wins. Either the payment ran and the lookup says "executed" with
// its response, or the lookup tombstoned the attempt and the request was
// refused without running. Run with -race.
func TestReconcileLookupRacesExecution(t *testing.T) {
	s, base := newReconcileServer(t, "")
	const n = 200
	type result struct {
		status  int
		body    []byte
		outcome string
		resp    *api.StoredResponse
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("%d.race", i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			resp, body, err := post(t, base, `{"amount":9}`, withAttempt(id, nil))
			if err != nil {
				t.Errorf("attempt %s: %v", id, err)
				return
			}
			results[i].status, results[i].body = resp.StatusCode, body
		}()
		go func() {
			defer wg.Done()
			status, a, raw := ask(t, base, query{attempt: id})
			if status != http.StatusOK {
				t.Errorf("lookup %s: %d %s", id, status, raw)
			}
			results[i].outcome, results[i].resp = a.Outcome, a.Response
		}()
	}
	wg.Wait()
	var ran, refused int
	for i, r := range results {
		switch {
		case r.status == http.StatusCreated && r.outcome == api.ReconcileExecuted && r.resp != nil && bytes.Equal(r.resp.Body, r.body):
			ran++
		case r.status == http.StatusConflict && r.outcome == api.ReconcileNotExecuted:
			refused++
		default:
			t.Errorf("attempt %d: request %d %s, lookup %q: both or neither won", i, r.status, r.body, r.outcome)
		}
	}
	if int64(ran) != s.Executions() {
		t.Errorf("executions %d, requests that ran %d", s.Executions(), ran)
	}
	t.Logf("%d attempts: %d ran before their lookup, %d were tombstoned first", n, ran, refused)
}

// Requests without the attempt header behave as before: every one runs.
func TestNoAttemptHeaderRunsEveryTime(t *testing.T) {
	s, base := newReconcileServer(t, "")
	for range 3 {
		if resp, body, err := post(t, base, `{"amount":1}`, nil); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("%v %s %v", resp, body, err)
		}
	}
	if s.Executions() != 3 || len(s.attempts) != 0 {
		t.Errorf("executions %d, attempts recorded %d; want 3, 0", s.Executions(), len(s.attempts))
	}
}

// Attempts created before this upstream started may have run in its
// previous life, which it does not remember: "unknown", nothing written.
func TestReconcileUnknownBeforeStart(t *testing.T) {
	s, base := newReconcileServer(t, "")
	status, a, raw := ask(t, base, query{attempt: "1.old", created: started.Add(-time.Second)})
	if status != http.StatusOK || a.Outcome != api.ReconcileUnknown || a.RetryAfterMS <= 0 {
		t.Errorf("lookup of an attempt older than the upstream: %d %s, want unknown with retry_after_ms", status, raw)
	}
	if len(s.attempts) != 0 {
		t.Errorf("the unknown answer recorded %d attempts, want none", len(s.attempts))
	}
}

func TestReconcileCredential(t *testing.T) {
	_, base := newReconcileServer(t, "s3cret")
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"s3cret", http.StatusUnauthorized},
		{"Bearer s3cret", http.StatusOK},
	} {
		if status, _, raw := ask(t, base, query{attempt: "2.auth", auth: tt.auth, dryRun: true}); status != tt.want {
			t.Errorf("Authorization %q: %d %s, want %d", tt.auth, status, raw, tt.want)
		}
	}
}

func TestReconcileBadQueries(t *testing.T) {
	s, base := newReconcileServer(t, "")
	for _, tt := range []struct {
		name, attempt, body, want string
	}{
		{"not JSON", "1.a", `{"attempt":`, "query"},
		{"attempt empty", "1.a", `{"key":"k"}`, "attempt is empty"},
		{"other attempt in the path", "1.b", `{"attempt":"1.a"}`, "in the path"},
		{"too large", "1.a", `{"attempt":"1.a","key":"` + strings.Repeat("k", maxQuery) + `"}`, "over"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, raw := ask(t, base, query{attempt: tt.attempt, body: tt.body})
			if status != http.StatusBadRequest || !strings.Contains(raw, tt.want) {
				t.Errorf("%d %s, want 400 naming %q", status, raw, tt.want)
			}
		})
	}
	if len(s.attempts) != 0 {
		t.Errorf("bad queries recorded %d attempts", len(s.attempts))
	}
	resp, err := http.Get(base + PathReconcile + "1.a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET lookup: %d, want 405", resp.StatusCode)
	}
}

// A full table neither executes a new attempt nor answers "not executed"
// without its tombstone.
func TestReconcileTableFull(t *testing.T) {
	s, base := newReconcileServer(t, "")
	s.maxAttempts = 3 // MaxAttempts entries would take seconds to fill
	for i := range s.maxAttempts {
		s.attempts[fmt.Sprint(i)] = &attempt{}
	}
	resp, body, err := post(t, base, `{"amount":1}`, withAttempt("new", nil))
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(HeaderNotExecuted) != "1" || s.Executions() != 0 {
		t.Errorf("new attempt, table full: %v %s (%v), executions %d; want 503 marked not executed, 0", resp, body, err, s.Executions())
	}
	if status, _, raw := ask(t, base, query{attempt: "other"}); status != http.StatusServiceUnavailable {
		t.Errorf("lookup, table full: %d %s, want 503 (a failed lookup)", status, raw)
	}
}
