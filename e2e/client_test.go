package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Hosts that select the e2e policy's routes (testdata/policy.json).
const (
	hostDefault  = "api.e2e.test"      // fail-closed, edge cache on: the demo route
	hostFailOpen = "failopen.e2e.test" // fail-open
	hostNoEdge   = "noedge.e2e.test"   // fail-closed, no edge cache: replays come from the control plane
)

// requestTimeout is a generous bound against hangs, not a latency check.
const requestTimeout = 60 * time.Second

// client never reuses a connection: net/http would silently re-send a
// request carrying Idempotency-Key on a reused connection that failed,
// and the suite counts executions.
var client = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	Timeout:   requestTimeout,
}

func random(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// payment is one POST /payments through the gateway.
type payment struct {
	host    string // default hostDefault
	path    string // default /payments
	key     string // "" with noKey: no header
	noKey   bool
	auth    string
	body    string
	headers map[string]string
}

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error: no answer at all
}

func (a answer) replayed() bool { return a.header.Get("Idempotent-Replayed") == "true" }

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	return http.StatusText(a.status) + " " + strings.TrimSpace(string(a.body))
}

func send(t testing.TB, p payment) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	path := p.path
	if path == "" {
		path = "/payments"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tgt.gateway+path, strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = p.host
	if req.Host == "" {
		req.Host = hostDefault
	}
	req.Header.Set("Content-Type", "application/json")
	if p.auth != "" {
		req.Header.Set("Authorization", p.auth)
	}
	if !p.noKey {
		req.Header.Set("Idempotency-Key", p.key)
	}
	for k, v := range p.headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// mustSend sends p and fails the test when no answer comes back.
func mustSend(t testing.TB, p payment) answer {
	t.Helper()
	a := send(t, p)
	if a.err != nil {
		t.Fatalf("POST /payments (key %q, host %q): %v", p.key, p.host, a.err)
	}
	return a
}

// executions reads the demo upstream's counter.
func executions(t testing.TB) int64 {
	t.Helper()
	resp, err := client.Get(tgt.upstream + "/__executions")
	if err != nil {
		t.Fatalf("GET /__executions: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Count *int64 `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Count == nil {
		t.Fatalf("GET /__executions: %s: bad answer (%v)", resp.Status, err)
	}
	return *v.Count
}

// wantExecuted checks the counter moved by exactly n since before.
func wantExecuted(t testing.TB, before, n int64) {
	t.Helper()
	if got := executions(t) - before; got != n {
		t.Errorf("upstream executions: +%d, want +%d", got, n)
	}
}

// wantFirst checks a, the answer to a key's first use, executed.
func wantFirst(t testing.TB, a answer) {
	t.Helper()
	if a.err != nil || a.status != http.StatusCreated || a.replayed() {
		t.Fatalf("first call: %v (replayed %q), want 201 not replayed", a, a.header.Get("Idempotent-Replayed"))
	}
}

// wantReplay checks b replays a.
func wantReplay(t testing.TB, a, b answer) {
	t.Helper()
	if b.err != nil {
		t.Fatalf("retry: %v", b.err)
	}
	if !b.replayed() {
		t.Errorf("retry: Idempotent-Replayed = %q, want true (%v)", b.header.Get("Idempotent-Replayed"), b)
	}
	if b.status != a.status || string(b.body) != string(a.body) {
		t.Errorf("retry: %d %s, want the original %d %s", b.status, b.body, a.status, a.body)
	}
	if got, want := b.header.Get("Content-Type"), a.header.Get("Content-Type"); got != want {
		t.Errorf("retry: Content-Type %q, want %q", got, want)
	}
}

// wantProblem checks a is a problem+json answer with status.
func wantProblem(t testing.TB, a answer, status int) {
	t.Helper()
	if a.err != nil || a.status != status {
		t.Fatalf("got %v, want %d", a, status)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(a.body, &p); err != nil || p.Title == "" {
		t.Errorf("problem body %s: %v (want a title)", a.body, err)
	}
}

// wantIndeterminate checks a is the indeterminate answer: 409 with its
// own problem type (retrying will not help), not "in progress" with a
// Retry-After of the record's whole TTL.
func wantIndeterminate(t testing.TB, a answer) {
	t.Helper()
	if a.err != nil || a.status != http.StatusConflict {
		t.Errorf("got %v, want 409 indeterminate", a)
		return
	}
	var p struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(a.body, &p); err != nil || !strings.Contains(p.Type, "indeterminate") {
		t.Errorf("409 of type %q, want the indeterminate problem type: %v", p.Type, a)
	}
	if ra := a.header.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err != nil || s > 30 {
			t.Errorf("indeterminate 409 with Retry-After %q: retrying will not help", ra)
		}
	}
}

// waitGoverned waits until a fresh key on the fail-closed route executes
// (not 503): the gateway reaches a working control plane again after a
// fault. Bounded; it fails the test if that never happens.
func waitGoverned(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last answer
	for time.Now().Before(deadline) {
		last = send(t, payment{key: random(t, "probe-"), auth: "Bearer probe", body: `{"amount":1}`})
		if last.err == nil && last.status == http.StatusCreated {
			return
		}
		if last.err == nil && last.status != http.StatusServiceUnavailable {
			t.Fatalf("probe after a fault: %v, want 201 (or 503 while recovering)", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the gateway did not govern requests again within 60s; last answer: %v", last)
}

// showLogsOnFailure prints the components' logs when t fails.
func showLogsOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() && tgt.logs != nil {
			t.Log("component logs:\n" + tgt.logs())
		}
	})
}
