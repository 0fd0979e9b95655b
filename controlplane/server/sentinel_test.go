package server_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
	"github.com/idemgate/idemgate/internal/syncbuf"
)

// The API over the documented Sentinel URL, on real processes, under
// continuous load across kill -9 of the master: while the sentinels switch,
// every failure a client sees is 503 with Retry-After and the
// store-unavailable problem type; afterwards the API serves again, with no
// error once the deployment is whole; and a completion acknowledged and on
// both replicas before the kill replays exactly, never acquired again.
// (controlplane/store's TestSentinelFailoverUnderLoad covers SENTINEL
// FAILOVER and counts what the switch window loses.)
func TestSentinelKillMasterHTTP(t *testing.T) {
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	client, err := store.NewClient(s.URL(), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	logs := &syncbuf.Buffer{}
	srv, err := server.New(store.New(client, store.Options{}), server.Options{
		Token: token, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	h := &httpLoad{t: t, url: ts.URL, hc: ts.Client()}
	h.ctx, h.cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(h.cancel)
	const workers = 3
	h.lastOK = make([]atomic.Int64, workers)
	keys := make([][]*httpKey, workers)
	for i := 0; i < workers; i++ {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			keys[i] = h.run(i)
		}()
	}
	h.waitOps(200)

	// Every completion acknowledged so far reaches both replicas: a marker
	// written after them is acknowledged by both (the stream is ordered).
	upTo := h.ackSeq.Load()
	s.Master(t).WaitReplicated(t, 2)
	h.protected.Store(upTo)

	h.faulting.Store(true)
	start := time.Now()
	s.KillMaster(t)
	switched := time.Now()
	h.waitEachSince(switched)
	served := time.Now()
	s.WaitReplicasInSync(t, 2)
	h.faulting.Store(false)
	during := h.unavailable.Load()
	h.waitOps(h.ops.Load() + 200)
	h.cancel()
	h.wg.Wait()

	t.Logf("kill -9 of the master: %d operations ok, %d answered 503 (first at +%v, last at +%v); KillMaster (promotion, old node back as a replica) returned after %v, all workers served after %v",
		h.ops.Load(), during, h.first503Since(start), h.last503Since(start),
		switched.Sub(start).Round(time.Millisecond), served.Sub(start).Round(time.Millisecond))
	if during == 0 {
		t.Error("no 503 while the master was dead: the load did not cross the fault")
	}
	if after := h.unavailable.Load() - during; after != 0 {
		t.Errorf("%d answers were 503 once the deployment was whole again", after)
	}

	// Every protected key replays exactly; the others replay a response
	// they were completed with (or were lost in the switch: counted).
	h.ctx, h.cancel = context.WithTimeout(context.Background(), time.Minute)
	defer h.cancel()
	prot := 0
	for w := range keys {
		for _, k := range keys[w] {
			if k.acked == "" {
				continue
			}
			if k.seq != 0 && k.seq <= upTo {
				prot++
			}
			h.replay(k)
		}
	}
	t.Logf("final check: %d protected keys; completions lost in the switch: %d", prot, h.lost.Load())
	if prot == 0 {
		t.Error("no key was protected before the kill: nothing was checked across it")
	}
	for _, msg := range h.wrong {
		t.Error(msg)
	}
	if t.Failed() {
		t.Logf("server log:\n%s", logs.String())
	}
}

type httpLoad struct {
	t           *testing.T
	url         string
	hc          *http.Client
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	ops         atomic.Int64
	ackSeq      atomic.Int64
	protected   atomic.Int64
	faulting    atomic.Bool
	unavailable atomic.Int64
	lost        atomic.Int64
	lastOK      []atomic.Int64

	mu                sync.Mutex
	first503, last503 time.Time
	wrong             []string
}

type httpKey struct {
	key, fp   string
	attempted []string
	acked     string
	seq       int64 // numbers an acknowledged completion made outside the fault; 0 otherwise
}

func (h *httpLoad) fail(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.wrong) < 50 {
		h.wrong = append(h.wrong, fmt.Sprintf(format, args...))
	}
}

func (h *httpLoad) run(w int) []*httpKey {
	var keys []*httpKey
	for n := 0; h.ctx.Err() == nil; n++ {
		if len(keys) < 5 || n%2 == 0 {
			k := &httpKey{key: fmt.Sprintf("w%d-%d", w, len(keys)), fp: fmt.Sprintf("fp-w%d-%d", w, len(keys))}
			keys = append(keys, k)
			if res, ok := h.reserve(w, k); ok {
				if res.Outcome != api.Acquired {
					h.fail("reserve of new key %s: %+v, want acquired", k.key, res)
				} else {
					h.complete(w, k, res.Token)
				}
			}
		} else if k := keys[n%len(keys)]; k.acked != "" {
			if res, ok := h.reserve(w, k); ok {
				h.check(w, k, res)
			}
		}
		time.Sleep(3 * time.Millisecond)
	}
	return keys
}

// post sends one API call, retrying while the answer is 503 (checking each
// 503), and returns the final status and body; ok is false when the load
// stopped first.
func (h *httpLoad) post(path string, body any) (int, []byte, bool) {
	b, _ := json.Marshal(body)
	for h.ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(h.ctx, http.MethodPost, h.url+path, strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := h.hc.Do(req)
		if err != nil {
			if h.ctx.Err() == nil {
				h.fail("POST %s: %v", path, err)
			}
			return 0, nil, false
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return resp.StatusCode, rb, true
		}
		h.check503(path, resp, rb)
		time.Sleep(20 * time.Millisecond)
	}
	return 0, nil, false
}

// check503 checks what a client (the filter) acts on: Retry-After and the
// problem type that says the key store is unavailable.
func (h *httpLoad) check503(path string, resp *http.Response, body []byte) {
	h.unavailable.Add(1)
	now := time.Now()
	h.mu.Lock()
	if h.first503.IsZero() {
		h.first503 = now
	}
	h.last503 = now
	h.mu.Unlock()
	var p api.Problem
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		h.fail("503 on %s: Retry-After %q, want 1", path, ra)
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type != "urn:idemgate:problem:store-unavailable" ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		h.fail("503 on %s: %s %q, want a store-unavailable problem", path, resp.Header.Get("Content-Type"), body)
	}
}

func (h *httpLoad) ok(w int) {
	h.ops.Add(1)
	h.lastOK[w].Store(time.Now().UnixNano())
}

func (h *httpLoad) reserve(w int, k *httpKey) (api.ReserveResponse, bool) {
	var res api.ReserveResponse
	status, b, ok := h.post(api.PathReserve, api.ReserveRequest{Scope: "failover", Key: k.key, Fingerprint: k.fp, Holder: "h" + rand.Text()})
	if !ok {
		return res, false
	}
	if status != http.StatusOK || json.Unmarshal(b, &res) != nil {
		h.fail("reserve %s: %d %s", k.key, status, b)
		return res, false
	}
	h.ok(w)
	return res, true
}

func (h *httpLoad) complete(w int, k *httpKey, tok string) {
	body := fmt.Sprintf("%s#%d", k.key, len(k.attempted)+1)
	k.attempted = append(k.attempted, body)
	status, b, ok := h.post(api.PathComplete, api.CompleteRequest{Scope: "failover", Key: k.key, Token: tok,
		Response: api.StoredResponse{Status: 201, Body: []byte(body)}})
	switch {
	case !ok:
	case status == http.StatusOK:
		h.ok(w)
		k.acked, k.seq = body, 0
		if !h.faulting.Load() {
			k.seq = h.ackSeq.Add(1)
		}
	case status == http.StatusConflict && h.faulting.Load():
		// The reservation was lost in the switch (stale token).
		h.lost.Add(1)
	default:
		h.fail("complete %s: %d %s", k.key, status, b)
	}
}

// check judges a reserve of a key whose completion was acknowledged.
func (h *httpLoad) check(w int, k *httpKey, res api.ReserveResponse) {
	prot := k.seq != 0 && k.seq <= h.protected.Load()
	switch {
	case res.Outcome == api.Completed && res.Response != nil && res.Response.Status == 201:
		got := string(res.Response.Body)
		if (prot && got != k.acked) || !slices.Contains(k.attempted, got) {
			h.fail("replay of %s (protected %v): %q, want %q (sent %q)", k.key, prot, got, k.acked, k.attempted)
		}
	case res.Outcome == api.Acquired && !prot:
		// Its completion was lost in the switch: count it, complete again.
		h.lost.Add(1)
		k.acked = ""
		h.complete(w, k, res.Token)
	default:
		h.fail("reserve of completed %s (protected %v): %+v", k.key, prot, res)
		k.acked = ""
	}
}

func (h *httpLoad) replay(k *httpKey) {
	if res, ok := h.reserve(0, k); ok {
		h.check(0, k, res)
	}
}

func (h *httpLoad) waitOps(n int64) {
	h.t.Helper()
	if !eventually(h.t, time.Minute, func() bool { return h.ops.Load() >= n }) {
		h.cancel()
		h.wg.Wait()
		h.t.Fatalf("only %d of %d operations succeeded within a minute; %v", h.ops.Load(), n, h.wrong)
	}
}

func (h *httpLoad) waitEachSince(t0 time.Time) {
	h.t.Helper()
	for i := range h.lastOK {
		if !eventually(h.t, time.Minute, func() bool { return h.lastOK[i].Load() > t0.UnixNano() }) {
			h.cancel()
			h.wg.Wait()
			h.t.Fatalf("worker %d not served within a minute of the switch; %v", i, h.wrong)
		}
	}
}

func (h *httpLoad) first503Since(t0 time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.first503.IsZero() {
		return 0
	}
	return h.first503.Sub(t0).Round(time.Millisecond)
}

func (h *httpLoad) last503Since(t0 time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last503.IsZero() {
		return 0
	}
	return h.last503.Sub(t0).Round(time.Millisecond)
}
