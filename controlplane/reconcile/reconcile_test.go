package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
)

const (
	scope = "tenant-1"
	fp    = "sha256:aa"
	// waitFor bounds the polls of the loop tests: wide, the machine is
	// loaded; they end as soon as the event is seen.
	waitFor = 30 * time.Second
)

// upstream is an httptest lookup endpoint whose answers the test sets per
// key; it records every query.
type upstream struct {
	ts *httptest.Server
	mu sync.Mutex
	// answer gives the status and body for a query; it may block.
	answer  func(q api.ReconcileQuery) (int, string)
	queries []api.ReconcileQuery
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q api.ReconcileQuery
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &q); err != nil {
			t.Errorf("upstream: query %s: %v", b, err)
		}
		u.mu.Lock()
		u.queries = append(u.queries, q)
		answer := u.answer
		u.mu.Unlock()
		status, body := answer(q)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(u.ts.Close)
	return u
}

func (u *upstream) setAnswer(f func(q api.ReconcileQuery) (int, string)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answer = f
}

func (u *upstream) asked(key string) []api.ReconcileQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []api.ReconcileQuery
	for _, q := range u.queries {
		if q.Key == key {
			out = append(out, q)
		}
	}
	return out
}

// byKey answers from a table of key → (status, body).
func byKey(m map[string]string) func(q api.ReconcileQuery) (int, string) {
	return func(q api.ReconcileQuery) (int, string) {
		body, ok := m[q.Key]
		if !ok {
			return 500, "no answer configured"
		}
		if status, rest, ok := strings.Cut(body, " "); ok && len(status) == 3 && status[0] >= '1' && status[0] <= '9' && strings.Trim(status, "0123456789") == "" {
			n := int(status[0]-'0')*100 + int(status[1]-'0')*10 + int(status[2]-'0')
			return n, rest
		}
		return 200, body
	}
}

// rig is a reconciler over a real store on a private redis-server.
type rig struct {
	st  *store.Store
	up  *upstream
	r   *Reconciler
	m   *Metrics
	reg *prometheus.Registry
}

type rigOpt struct {
	targetURL   string // "" = the upstream's
	sealer      *seal.Sealer
	concurrency int
}

func newRig(t *testing.T, mods ...func(*rigOpt)) *rig {
	t.Helper()
	var o rigOpt
	for _, m := range mods {
		m(&o)
	}
	rs := redistest.Start(t)
	client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	// Abandoned records are due at once.
	st := store.New(client, store.Options{ReconcileDelay: time.Millisecond})
	up := newUpstream(t)
	url := o.targetURL
	if url == "" {
		url = up.ts.URL
	}
	c := NewClient([]Target{{Name: DefaultTarget, Template: url + "/__idempotency/{attempt}?key={key}"}}, nil, 10*time.Second, MaxAnswerBytes(4096))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{DefaultTarget})
	r := New(st, c, Options{
		Interval:    10 * time.Millisecond,
		Concurrency: o.concurrency,
		MaxBackoff:  time.Minute,
		OpTimeout:   5 * time.Second,
		Sealer:      o.sealer,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:     m,
	})
	return &rig{st: st, up: up, r: r, m: m, reg: reg}
}

// indeterminate makes key an abandoned record of a route that reconciles
// and returns its token (the attempt id).
func (g *rig) indeterminate(t *testing.T, key string) string {
	t.Helper()
	tok := g.acquire(t, key, api.LeaseReconcile, 0)
	if err := g.st.Abandon(context.Background(), api.AbandonRequest{Scope: scope, Key: key, Token: tok}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func (g *rig) acquire(t *testing.T, key, onIndeterminate string, leaseMS int64) string {
	t.Helper()
	res, err := g.st.Reserve(context.Background(), api.ReserveRequest{Scope: scope, Key: key, Fingerprint: fp, OnIndeterminate: onIndeterminate, LeaseMS: leaseMS})
	if err != nil || res.Outcome != api.Acquired {
		t.Fatalf("reserve %s: %+v, %v", key, res, err)
	}
	return res.Token
}

// retry is what a client's retry of key gets.
func (g *rig) retry(t *testing.T, key string) api.ReserveResponse {
	t.Helper()
	res, err := g.st.Reserve(context.Background(), api.ReserveRequest{Scope: scope, Key: key, Fingerprint: fp, OnIndeterminate: api.LeaseReconcile})
	if err != nil && !errors.Is(err, store.ErrLeaseEnded) {
		t.Fatalf("reserve %s: %v", key, err)
	}
	return res
}

func (g *rig) record(t *testing.T, key string) *api.Record {
	t.Helper()
	rec, err := g.st.Get(context.Background(), scope, key, true)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// counter reads one series of a counter vector.
func counter(t *testing.T, c *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// eventually polls f every 10 ms until it holds or waitFor passes.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const executedAnswer = `{"outcome":"executed","response":{"status":201,"headers":[["content-type","application/json"]],"body":"eyJpZCI6InBheV8xIn0="}}`

// TestReconcileAppliesAnswers runs one lookup per record (the admin path,
// which applies answers as the loop does) against every kind of answer:
// executed completes the record and a retry replays the upstream's
// response; not executed releases it and a retry acquires; unknown and
// every failed lookup leave it indeterminate (a retry is refused), with
// the attempt recorded.
func TestReconcileAppliesAnswers(t *testing.T) {
	g := newRig(t)
	answers := map[string]string{
		"executed":                  executedAnswer,
		"not-executed":              `{"outcome":"not_executed"}`,
		"unknown":                   `{"outcome":"unknown","retry_after_ms":5000}`,
		"404":                       `404 {"outcome":"not_executed"}`,
		"500":                       `500 {"outcome":"not_executed"}`,
		"garbled":                   `{"outcome":"not_exe`,
		"unknown-outcome":           `{"outcome":"rolled_back"}`,
		"executed-without-response": `{"outcome":"executed"}`,
		"bad-header":                `{"outcome":"executed","response":{"status":201,"headers":[["x","a\r\nb"]]}}`,
		"oversized":                 `{"outcome":"not_executed"}` + strings.Repeat(" ", int(MaxAnswerBytes(4096))),
	}
	g.up.setAnswer(byKey(answers))
	tests := []struct {
		key        string
		wantEffect api.Effect
		wantLast   string // the record's reconcile_last when it stays
		failed     bool
	}{
		{"executed", api.EffectCompleted, "", false},
		{"not-executed", api.EffectReleased, "", false},
		{"unknown", api.EffectNoop, api.ReconcileUnknown, false},
		{"404", api.EffectNoop, api.ReconcileFailed, true},
		{"500", api.EffectNoop, api.ReconcileFailed, true},
		{"garbled", api.EffectNoop, api.ReconcileFailed, true},
		{"unknown-outcome", api.EffectNoop, api.ReconcileFailed, true},
		{"executed-without-response", api.EffectNoop, api.ReconcileFailed, true},
		{"bad-header", api.EffectNoop, api.ReconcileFailed, true},
		{"oversized", api.EffectNoop, api.ReconcileFailed, true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			tok := g.indeterminate(t, tt.key)
			res, err := g.r.Reconcile(context.Background(), scope, tt.key, false)
			var le *LookupError
			if tt.failed != errors.As(err, &le) || !tt.failed && err != nil {
				t.Fatalf("Reconcile = %+v, %v; want a failed lookup: %v", res, err, tt.failed)
			}
			if res.Effect != tt.wantEffect {
				t.Errorf("effect %s, want %s", res.Effect, tt.wantEffect)
			}
			q := g.up.asked(tt.key)
			if len(q) != 1 || q[0].Attempt != tok || q[0].Scope != scope || q[0].Fingerprint == "" || q[0].CreatedAt.IsZero() || q[0].DryRun {
				t.Errorf("queries %+v, want one for attempt %s", q, tok)
			}
			retry := g.retry(t, tt.key)
			switch tt.wantEffect {
			case api.EffectCompleted:
				if retry.Outcome != api.Completed || retry.Response == nil || retry.Response.Status != 201 || string(retry.Response.Body) != `{"id":"pay_1"}` ||
					len(retry.Response.Headers) != 1 {
					t.Errorf("retry = %+v (%+v), want the upstream's 201 replayed", retry, retry.Response)
				}
			case api.EffectReleased:
				if retry.Outcome != api.Acquired {
					t.Errorf("retry = %+v, want acquired (the key was released)", retry)
				}
			default:
				if retry.Outcome != api.Indeterminate {
					t.Errorf("retry = %+v, want indeterminate (never released on a guess)", retry)
				}
				rec := g.record(t, tt.key)
				if rec == nil || rec.State != api.StateIndeterminate || rec.ReconcileLast != tt.wantLast || rec.ReconcileAttempts != 1 || rec.ReconcileNextAt == nil {
					t.Errorf("record %+v, want indeterminate with last %s, 1 attempt and a next lookup", rec, tt.wantLast)
				}
			}
		})
	}
	if got := counter(t, g.m.asked, DefaultTarget); got != float64(len(tests)) {
		t.Errorf("asked %v, want %d", got, len(tests))
	}
	for answer, want := range map[string]float64{api.ReconcileExecuted: 1, api.ReconcileNotExecuted: 1, api.ReconcileUnknown: 1, api.ReconcileFailed: 7} {
		if got := counter(t, g.m.answers, DefaultTarget, answer); got != want {
			t.Errorf("answers{%s} = %v, want %v", answer, got, want)
		}
	}
	for effect, want := range map[string]float64{appliedCompleted: 1, appliedReleased: 1, appliedStale: 0} {
		if got := counter(t, g.m.applied, effect); got != want {
			t.Errorf("applied{%s} = %v, want %v", effect, got, want)
		}
	}
}

// TestRunResolves: the loop finds abandoned records on its own and
// resolves them; it never asks about a record whose route does not
// reconcile.
func TestRunResolves(t *testing.T) {
	g := newRig(t)
	g.up.setAnswer(byKey(map[string]string{"ran": executedAnswer, "did-not-run": `{"outcome":"not_executed"}`}))
	g.indeterminate(t, "ran")
	g.indeterminate(t, "did-not-run")
	lockTok := g.acquire(t, "locked", api.LeaseLock, 0)
	if err := g.st.Abandon(context.Background(), api.AbandonRequest{Scope: scope, Key: "locked", Token: lockTok}); err != nil {
		t.Fatal(err)
	}
	stop := g.run(t)
	eventually(t, "both records resolved", func() bool {
		rec := g.record(t, "ran")
		return rec != nil && rec.State == api.StateCompleted && g.record(t, "did-not-run") == nil
	})
	stop()
	if r := g.retry(t, "ran"); r.Outcome != api.Completed || r.Response.Status != 201 {
		t.Errorf("retry of ran = %+v, want the 201 replayed", r)
	}
	if r := g.retry(t, "did-not-run"); r.Outcome != api.Acquired {
		t.Errorf("retry of did-not-run = %+v, want acquired", r)
	}
	if q := g.up.asked("locked"); len(q) != 0 {
		t.Errorf("the loop asked about a record that locks: %+v", q)
	}
	if r := g.retry(t, "locked"); r.Outcome != api.Indeterminate {
		t.Errorf("retry of locked = %+v, want indeterminate", r)
	}
	if a, c, rl := counter(t, g.m.asked, DefaultTarget), counter(t, g.m.applied, appliedCompleted), counter(t, g.m.applied, appliedReleased); a != 2 || c != 1 || rl != 1 {
		t.Errorf("asked %v, completed %v, released %v; want 2, 1, 1", a, c, rl)
	}
}

// run starts the loop; the returned func stops it and waits for it.
func (g *rig) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.r.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(waitFor):
				t.Errorf("Run did not return within %v of its context's end", waitFor)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestRunAsksAgainAfterUnknown: an unknown answer leaves the record
// indeterminate with the attempt counted; the loop asks again after the
// wait the upstream asked for and applies the second answer.
func TestRunAsksAgainAfterUnknown(t *testing.T) {
	g := newRig(t)
	second := make(chan struct{})
	proceed := make(chan struct{})
	var n atomic.Int32
	g.up.setAnswer(func(q api.ReconcileQuery) (int, string) {
		if n.Add(1) == 1 {
			return 200, `{"outcome":"unknown","retry_after_ms":100}`
		}
		close(second)
		<-proceed
		return 200, executedAnswer
	})
	g.indeterminate(t, "slow")
	g.run(t)
	select {
	case <-second:
	case <-time.After(waitFor):
		t.Fatal("not asked a second time")
	}
	// The second lookup is in flight: the first answer left the record
	// as it was, one attempt later.
	rec := g.record(t, "slow")
	if rec == nil || rec.State != api.StateIndeterminate || rec.ReconcileAttempts != 1 || rec.ReconcileLast != api.ReconcileUnknown {
		t.Errorf("after unknown: %+v, want indeterminate, 1 attempt, last unknown", rec)
	}
	if r := g.retry(t, "slow"); r.Outcome != api.Indeterminate {
		t.Errorf("retry after unknown = %+v, want indeterminate", r)
	}
	close(proceed)
	eventually(t, "completed after the second answer", func() bool {
		rec := g.record(t, "slow")
		return rec != nil && rec.State == api.StateCompleted
	})
	if got := counter(t, g.m.answers, DefaultTarget, api.ReconcileUnknown); got != 1 {
		t.Errorf("answers{unknown} = %v, want 1", got)
	}
}

// TestRunUpstreamDown: with nobody answering, records stay indeterminate
// (counted failed, postponed with backoff), never released.
func TestRunUpstreamDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	g := newRig(t, func(o *rigOpt) { o.targetURL = down.URL })
	g.indeterminate(t, "k1")
	g.indeterminate(t, "k2")
	stop := g.run(t)
	eventually(t, "both lookups failed and postponed", func() bool {
		for _, k := range []string{"k1", "k2"} {
			if rec := g.record(t, k); rec == nil || rec.ReconcileAttempts < 1 {
				return false
			}
		}
		return true
	})
	stop()
	for _, k := range []string{"k1", "k2"} {
		rec := g.record(t, k)
		if rec == nil || rec.State != api.StateIndeterminate || rec.ReconcileLast != api.ReconcileFailed || rec.ReconcileNextAt == nil {
			t.Errorf("%s: %+v, want indeterminate, last failed, a next lookup", k, rec)
		}
		if r := g.retry(t, k); r.Outcome != api.Indeterminate || r.ReconcileInMS < 1 {
			t.Errorf("retry of %s = %+v, want indeterminate with reconcile_in_ms", k, r)
		}
	}
	if got := counter(t, g.m.answers, DefaultTarget, api.ReconcileFailed); got < 2 {
		t.Errorf("answers{failed} = %v, want at least 2", got)
	}
	if got := counter(t, g.m.applied, appliedReleased) + counter(t, g.m.applied, appliedCompleted); got != 0 {
		t.Errorf("applied %v answers with nobody answering", got)
	}
}

// TestAnswerAfterHolderSettled: a record its holder completes (or that is
// released) between the claim and the answer stays as the holder left
// it; the answer is counted stale.
func TestAnswerAfterHolderSettled(t *testing.T) {
	held := api.StoredResponse{Status: 200, Body: []byte("the holder's")}
	for _, answer := range []string{executedAnswer, `{"outcome":"not_executed"}`} {
		t.Run(strings.SplitN(answer, `"`, 5)[3], func(t *testing.T) {
			g := newRig(t)
			// A lease of 1 ms that ends without word: the record is due.
			tok := g.acquire(t, "late", api.LeaseReconcile, 1)
			eventually(t, "lease ended", func() bool {
				rec := g.record(t, "late")
				return rec != nil && rec.State == api.StateIndeterminate
			})
			g.up.setAnswer(func(q api.ReconcileQuery) (int, string) {
				// The holder's late complete arrives while the upstream
				// is being asked.
				if err := g.st.Complete(context.Background(), api.CompleteRequest{Scope: scope, Key: "late", Token: tok, Response: held}); err != nil {
					t.Errorf("late complete: %v", err)
				}
				return 200, answer
			})
			res, err := g.r.Reconcile(context.Background(), scope, "late", false)
			if err != nil || res.Effect != api.EffectNoop {
				t.Fatalf("Reconcile = %+v, %v; want noop", res, err)
			}
			rec := g.record(t, "late")
			if rec == nil || rec.State != api.StateCompleted || rec.Response == nil || string(rec.Response.Body) != "the holder's" {
				t.Errorf("record %+v, want the holder's response", rec)
			}
			if got := counter(t, g.m.applied, appliedStale); got != 1 {
				t.Errorf("applied{stale} = %v, want 1", got)
			}
		})
	}
}

// TestReconcileDryRun: a dry run asks with dry_run and changes nothing.
func TestReconcileDryRun(t *testing.T) {
	g := newRig(t)
	g.up.setAnswer(byKey(map[string]string{"a": executedAnswer, "b": `{"outcome":"not_executed"}`, "c": `{"outcome":"unknown"}`, "d": `503 busy`}))
	for _, tt := range []struct {
		key    string
		effect api.Effect
		failed bool
	}{
		{"a", api.EffectWouldComplete, false},
		{"b", api.EffectWouldRelease, false},
		{"c", api.EffectNoop, false},
		{"d", api.EffectNoop, true},
	} {
		g.indeterminate(t, tt.key)
		res, err := g.r.Reconcile(context.Background(), scope, tt.key, true)
		if res.Effect != tt.effect || (err != nil) != tt.failed || res.Record == nil {
			t.Errorf("%s: %+v, %v; want %s", tt.key, res, err, tt.effect)
		}
		if q := g.up.asked(tt.key); len(q) != 1 || !q[0].DryRun {
			t.Errorf("%s: queries %+v, want one with dry_run", tt.key, q)
		}
		rec := g.record(t, tt.key)
		if rec == nil || rec.State != api.StateIndeterminate || rec.ReconcileAttempts != 0 || rec.ReconcileLast != "" {
			t.Errorf("%s: after a dry run %+v, want it untouched", tt.key, rec)
		}
	}
	for _, e := range []string{appliedCompleted, appliedReleased, appliedStale} {
		if got := counter(t, g.m.applied, e); got != 0 {
			t.Errorf("applied{%s} = %v after dry runs", e, got)
		}
	}
}

// TestReconcileRefuses: nothing is asked about an absent or completed
// record, one whose lease runs, or one whose route does not reconcile.
func TestReconcileRefuses(t *testing.T) {
	g := newRig(t)
	g.up.setAnswer(func(api.ReconcileQuery) (int, string) { return 200, `{"outcome":"not_executed"}` })
	ctx := context.Background()

	if _, err := g.r.Reconcile(ctx, scope, "absent", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("absent: %v, want ErrNotFound", err)
	}
	tok := g.acquire(t, "done", api.LeaseReconcile, 0)
	if err := g.st.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "done", Token: tok, Response: api.StoredResponse{Status: 201}}); err != nil {
		t.Fatal(err)
	}
	if res, err := g.r.Reconcile(ctx, scope, "done", false); err != nil || res.Effect != api.EffectNoop || res.Record == nil || res.Record.State != api.StateCompleted {
		t.Errorf("completed: %+v, %v; want noop with the record", res, err)
	}
	g.acquire(t, "live", api.LeaseReconcile, 60_000)
	if res, err := g.r.Reconcile(ctx, scope, "live", false); !errors.Is(err, store.ErrLeaseLive) || res.Record == nil {
		t.Errorf("live lease: %+v, %v; want ErrLeaseLive with the record", res, err)
	}
	for _, oi := range []string{api.LeaseLock, ""} {
		key := "locks" + oi
		tok := g.acquire(t, key, oi, 0)
		if err := g.st.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: key, Token: tok}); err != nil {
			t.Fatal(err)
		}
		if _, err := g.r.Reconcile(ctx, scope, key, false); !errors.Is(err, ErrNotReconcilable) {
			t.Errorf("on_indeterminate %q: %v, want ErrNotReconcilable", oi, err)
		}
		if r := g.retry(t, key); r.Outcome != api.Indeterminate {
			t.Errorf("%s: %+v, want it still indeterminate", key, r)
		}
	}
	g.up.mu.Lock()
	n := len(g.up.queries)
	g.up.mu.Unlock()
	if n != 0 {
		t.Errorf("%d lookups sent, want none", n)
	}
}

// TestRunStopsOnCancel: ending Run's context cuts the lookup in flight and
// returns; the record is left for the next claim, not counted failed.
func TestRunStopsOnCancel(t *testing.T) {
	g := newRig(t)
	asked := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	defer close(release)
	g.up.setAnswer(func(api.ReconcileQuery) (int, string) {
		once.Do(func() { close(asked) })
		<-release
		return 200, `{"outcome":"not_executed"}`
	})
	g.indeterminate(t, "k")
	stop := g.run(t)
	select {
	case <-asked:
	case <-time.After(waitFor):
		t.Fatal("never asked")
	}
	stop() // fails the test unless Run returns
	rec := g.record(t, "k")
	if rec == nil || rec.State != api.StateIndeterminate || rec.ReconcileAttempts != 0 {
		t.Errorf("after the stop: %+v, want it indeterminate, untouched", rec)
	}
	if got := counter(t, g.m.answers, DefaultTarget, api.ReconcileFailed); got != 0 {
		t.Errorf("answers{failed} = %v; a stop is not a failed lookup", got)
	}
}

// TestExecutedBodySealed: with encryption at rest, the upstream's body is
// stored sealed to its record, as a complete's would be.
func TestExecutedBodySealed(t *testing.T) {
	sealer, err := seal.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	g := newRig(t, func(o *rigOpt) { o.sealer = sealer })
	g.up.setAnswer(func(api.ReconcileQuery) (int, string) { return 200, executedAnswer })
	g.indeterminate(t, "sealed")
	if _, err := g.r.Reconcile(context.Background(), scope, "sealed", false); err != nil {
		t.Fatal(err)
	}
	rec := g.record(t, "sealed")
	if rec == nil || rec.Response == nil || strings.Contains(string(rec.Response.Body), "pay_1") {
		t.Fatalf("stored %+v, want a sealed body", rec)
	}
	pt, err := sealer.Open(rec.Response.Body, seal.RecordAAD(scope, "sealed"))
	if err != nil || string(pt) != `{"id":"pay_1"}` {
		t.Errorf("opened %q, %v", pt, err)
	}
}

// TestRunBoundsConcurrency: at most Concurrency lookups are in flight; the
// others wait for a free worker (and are claimed only then).
func TestRunBoundsConcurrency(t *testing.T) {
	const workers, records = 2, 6
	g := newRig(t, func(o *rigOpt) { o.concurrency = workers })
	var inFlight, most atomic.Int32
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) }) // before the upstream closes: free what still waits
	g.up.setAnswer(func(api.ReconcileQuery) (int, string) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-gate
		inFlight.Add(-1)
		return 200, `{"outcome":"not_executed"}`
	})
	for i := range records {
		g.indeterminate(t, "k"+string(rune('0'+i)))
	}
	g.run(t)
	for range records {
		eventually(t, "the workers busy", func() bool { return inFlight.Load() == workers || g.allAsked(records) && inFlight.Load() > 0 })
		gate <- struct{}{}
	}
	eventually(t, "every record released", func() bool {
		for i := range records {
			if g.record(t, "k"+string(rune('0'+i))) != nil {
				return false
			}
		}
		return true
	})
	if m := most.Load(); m != workers {
		t.Errorf("at most %d lookups in flight, want %d", m, workers)
	}
}

func (g *rig) allAsked(n int) bool {
	g.up.mu.Lock()
	defer g.up.mu.Unlock()
	return len(g.up.queries) >= n
}
