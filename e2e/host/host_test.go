package host

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
)

const (
	wasmPath = "../../build/idempotency.wasm"
	// lockConfig is the demo policy with on_indeterminate: lock (the demo's
	// own reconciles, which needs a control plane with a lookup target;
	// these tests run the control plane's server without one, and test
	// the lock: a dropped answer locks the key).
	lockConfig = "testdata/lock.json"
	demoToken  = "demo-token-change-me"
)

// readModule reads the compiled module the Makefile builds before tests.
func readModule(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("read %s (run `make wasm`): %v", wasmPath, err)
	}
	return b
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testUpstream counts executions: a POST whose X-Test-Drop header asks
// for it is executed and then its connection is closed without an answer.
type testUpstream struct {
	executions atomic.Int64
	srv        *httptest.Server
}

func newTestUpstream(t *testing.T) *testUpstream {
	u := &testUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost {
			rw.Write([]byte("ok"))
			return
		}
		n := u.executions.Add(1)
		if r.Header.Get("X-Test-Drop") != "" {
			conn, _, err := rw.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		rw.Header().Set("content-type", "application/json")
		rw.Header().Set("set-cookie", "s=1")
		rw.WriteHeader(201)
		json.NewEncoder(rw).Encode(map[string]any{"n": n, "echo": json.RawMessage(body)})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *testUpstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// controlPlane is the real control plane (server + store) on a private
// redis-server, served on a loopback listener that stop closes.
type controlPlane struct {
	addr string
	srv  *http.Server
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	rs := redistest.Start(t)
	st := store.New(rs.Client(), store.Options{})
	s, err := server.New(st, server.Options{Token: demoToken})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: ln.Addr().String(), srv: &http.Server{Handler: s}}
	go cp.srv.Serve(ln)
	t.Cleanup(cp.stop)
	return cp
}

func (c *controlPlane) stop() { c.srv.Close() }

// newHost starts a Host on the compiled module with the demo policy.
func newHost(t *testing.T, cp *controlPlane, up *testUpstream, workers int) (*Host, string) {
	t.Helper()
	return newHostWith(t, cp, up, Config{Workers: workers})
}

type result struct {
	status int
	header http.Header
	body   string
}

func post(t *testing.T, url, key, body string, extra ...string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer alice")
	if key != "" {
		req.Header.Set("idempotency-key", key)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(b)}
}

// TestGovernedRequests runs the compiled filter against the real control
// plane: execute, replay, mismatch, missing key, pass-through.
func TestGovernedRequests(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	_, url := newHost(t, cp, up, 2)

	first := post(t, url+"/payments", `"k1"`, `{"amount":10,"currency":"EUR"}`)
	if first.status != 201 || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first = %d %v %s, want 201 not replayed", first.status, first.header, first.body)
	}
	// Canonically equal body, served by the other worker (round robin).
	replay := post(t, url+"/payments", `"k1"`, `{ "currency":"EUR", "amount":1E1 }`)
	if replay.status != 201 || replay.header.Get("Idempotent-Replayed") != "true" || replay.body != first.body {
		t.Fatalf("replay = %d %v %s, want 201 replayed %s", replay.status, replay.header, replay.body, first.body)
	}
	if got := up.executions.Load(); got != 1 {
		t.Fatalf("executions = %d, want 1", got)
	}
	mismatch := post(t, url+"/payments", `"k1"`, `{"amount":11,"currency":"EUR"}`)
	if mismatch.status != 422 || mismatch.header.Get("content-type") != "application/problem+json" {
		t.Fatalf("mismatch = %d %v %s, want 422 problem+json", mismatch.status, mismatch.header, mismatch.body)
	}
	missing := post(t, url+"/payments", "", `{"amount":10}`)
	if missing.status != 400 || !strings.Contains(missing.body, "Idempotency-Key is missing") {
		t.Fatalf("missing key = %d %s, want 400 'Idempotency-Key is missing'", missing.status, missing.body)
	}
	other := post(t, url+"/other", "", `{}`)
	if other.status != 201 || up.executions.Load() != 2 {
		t.Fatalf("ungoverned POST = %d (executions %d), want 201 and 2", other.status, up.executions.Load())
	}
}

// TestEdgeCacheSharedByWorkers: a response completed through one VM is
// replayed by the other from shared data when the control plane is gone.
func TestEdgeCacheSharedByWorkers(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	h, url := newHost(t, cp, up, 2)
	first := post(t, url+"/payments", `"edge"`, `{"amount":1}`)
	if first.status != 201 {
		t.Fatalf("first = %d %s", first.status, first.body)
	}
	// A VM fills and replays its edge cache only once it knows the
	// control plane's edge epoch (its first poll, at its first tick):
	// replay with the control plane up until both workers (round robin)
	// replay from the edge twice in a row. Bounded.
	edge := func() uint64 { n, _ := h.Counter("idemgate.replays_edge"); return n }
	for i, inRow := 0, 0; inRow < 2; i++ {
		if i == 200 {
			t.Fatalf("no two edge replays in a row with the control plane up (replays_edge %d)", edge())
		}
		before := edge()
		if r := post(t, url+"/payments", `"edge"`, `{"amount":1}`); r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay with the control plane up = %d %s", r.status, r.body)
		}
		if edge() == before+1 {
			inRow++
		} else {
			inRow = 0
			time.Sleep(20 * time.Millisecond)
		}
	}
	cp.stop()
	base := edge()
	for i := range 2 { // one request on each worker
		r := post(t, url+"/payments", `"edge"`, `{"amount":1}`)
		if r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay %d with the control plane down = %d %s, want an edge replay", i, r.status, r.body)
		}
	}
	if n := edge() - base; n != 2 {
		t.Errorf("replays_edge grew by %d with the control plane down, want 2", n)
	}
	if up.executions.Load() != 1 {
		t.Errorf("executions = %d, want 1", up.executions.Load())
	}
	// A new key now fails closed: the callout finds nothing listening.
	r := post(t, url+"/payments", `"new"`, `{"amount":1}`)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("new key with the control plane down = %d %v, want 503 + Retry-After", r.status, r.header)
	}
	if !strings.Contains(h.Stats(), "wasmcustom.idemgate.controlplane_errors: 1") {
		t.Errorf("stats lack one control-plane error:\n%s", h.Stats())
	}
}

// TestNoResendOnDroppedConnection: net/http's Transport re-sends a
// request carrying Idempotency-Key on a fresh connection when a reused
// one fails after sending it, unless the body cannot be rewound. The
// upstream executes and drops; the host must not send it again.
func TestNoResendOnDroppedConnection(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	_, url := newHost(t, cp, up, 1)
	// Warm the host's keep-alive connection to the upstream.
	if r := post(t, url+"/other", "", `{}`); r.status != 201 {
		t.Fatalf("warm-up = %d", r.status)
	}
	for _, body := range []string{`{"a":1}`, ""} { // with and without a body
		before := up.executions.Load()
		r := post(t, url+"/other", `"drop"`, body, "X-Test-Drop", "1")
		if r.status != 503 {
			t.Errorf("dropped request (body %q) = %d %s, want the router's 503", body, r.status, r.body)
		}
		if got := up.executions.Load() - before; got != 1 {
			t.Fatalf("dropped request (body %q) executed %d times, want once", body, got)
		}
		post(t, url+"/other", "", `{}`) // a fresh connection for the next round
	}
}

// TestUpstreamDown: the router's own 503 when nothing listens upstream.
func TestUpstreamDown(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	_, url := newHost(t, cp, up, 1)
	up.srv.Close()
	r := post(t, url+"/payments", `"down"`, `{"amount":1}`)
	if r.status != 503 || !strings.Contains(r.body, "upstream connect error") {
		t.Fatalf("upstream down = %d %s, want the router's 503", r.status, r.body)
	}
}

// TestConcurrentDuplicates: many identical requests at once on two VMs
// execute once.
func TestConcurrentDuplicates(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	_, url := newHost(t, cp, up, 2)
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = post(t, url+"/payments", `"dup"`, `{"amount":5}`).status
		}()
	}
	wg.Wait()
	if got := up.executions.Load(); got != 1 {
		t.Fatalf("executions = %d, want 1 (statuses %v)", got, statuses)
	}
	for _, s := range statuses {
		if s != 201 && s != 409 {
			t.Fatalf("statuses %v: want only 201 and 409", statuses)
		}
	}
}

func TestHeaderMapRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs [][2]string
	}{
		{"empty", nil},
		{"one", [][2]string{{":status", "200"}}},
		{"empty values and repeats", [][2]string{{"a", ""}, {"a", "x"}, {"", "v"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deserializeMap(serializeMap(tt.pairs))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.pairs) {
				t.Fatalf("got %v, want %v", got, tt.pairs)
			}
			for i := range got {
				if got[i] != tt.pairs[i] {
					t.Fatalf("got %v, want %v", got, tt.pairs)
				}
			}
		})
	}
	bad := [][]byte{{1, 0, 0}, {5, 0, 0, 0, 1, 0, 0, 0}, append(serializeMap([][2]string{{"abc", "def"}})[:14], 0)}
	for _, b := range bad {
		if _, err := deserializeMap(b); err == nil {
			t.Errorf("deserializeMap(%v) accepted truncated input", b)
		}
	}
}

// TestUpstreamDropNeverReexecutes: the upstream executes and drops the
// connection; the host's router answers 503 with Envoy's reset details,
// which the filter must treat as indeterminate: a retry gets 409, not a
// second execution.
func TestUpstreamDropNeverReexecutes(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	_, url := newHost(t, cp, up, 1)
	r := post(t, url+"/payments", `"dropped"`, `{"amount":3}`, "X-Test-Drop", "1")
	if r.status != 503 {
		t.Fatalf("dropped = %d %s, want the router's 503", r.status, r.body)
	}
	var retry result
	// The abandon call is asynchronous: poll briefly until it landed.
	for i := 0; i < 50; i++ {
		if retry = post(t, url+"/payments", `"dropped"`, `{"amount":3}`); retry.status == 409 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 409 either way: in progress until the abandon lands, then the
	// indeterminate problem (which needs no Retry-After: retrying will not
	// help).
	if retry.status != 409 {
		t.Fatalf("retry after a drop = %d %s, want 409", retry.status, retry.body)
	}
	if got := up.executions.Load(); got != 1 {
		t.Fatalf("executions = %d, want 1", got)
	}
}

// waitStreamsDone waits (bounded) until no stream is open in any worker:
// the host has run proxy_on_log and proxy_on_delete for every request.
func waitStreamsDone(t *testing.T, h *Host) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		open := 0
		for _, w := range h.workers {
			w.mu.Lock()
			open += len(w.streams)
			w.mu.Unlock()
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still open", open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClientGoneMidBodyNotForwarded: a client that announces a body and
// disconnects before sending all of it never completed its request; Envoy
// resets the stream and nothing goes upstream. The host must not take the
// truncated body for the whole one.
func TestClientGoneMidBodyNotForwarded(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	h, url := newHost(t, cp, up, 1)
	for _, path := range []string{"/payments", "/other"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := `{"amount":1}` // valid JSON, but not the 100 bytes announced
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Authorization: Bearer alice\r\nIdempotency-Key: \"trunc\"\r\nContent-Length: 100\r\n\r\n%s", path, body)
		conn.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, conn) // until the host closes or answers
		conn.Close()
		waitStreamsDone(t, h)
	}
	if got := up.executions.Load(); got != 0 {
		t.Fatalf("truncated requests executed %d times upstream, want 0", got)
	}
	// The filter never saw that request end: its key was neither reserved
	// nor locked, and the whole request executes.
	if r := post(t, url+"/payments", `"trunc"`, `{"amount":1}`); r.status != 201 {
		t.Fatalf("the complete request after a truncated one = %d %s, want 201", r.status, r.body)
	}
}

// TestUpstreamResetMidBody: the upstream answers 201, sends part of its
// body and drops the connection. Envoy passes the body on without
// end_of_stream and then resets the client's stream: the filter never
// sees a complete response, so it stores the status only (body omitted),
// and the client never gets a response that looks complete.
func TestUpstreamResetMidBody(t *testing.T) {
	cp := startControlPlane(t)
	var executions atomic.Int64
	up := &testUpstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		executions.Add(1)
		rw.Header().Set("content-type", "application/json")
		rw.Header().Set("content-length", "100")
		rw.WriteHeader(201)
		rw.Write([]byte(`{"partial":`))
		rw.(http.Flusher).Flush()
		if conn, _, err := rw.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(up.srv.Close)
	h, url := newHost(t, cp, up, 1)

	req, _ := http.NewRequest(http.MethodPost, url+"/payments", strings.NewReader(`{"amount":7}`))
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer alice")
	req.Header.Set("idempotency-key", `"midbody"`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Errorf("client got a complete-looking %d %q from a response the upstream cut short", resp.StatusCode, b)
		}
	}
	waitStreamsDone(t, h)
	retry := post(t, url+"/payments", `"midbody"`, `{"amount":7}`)
	if strings.Contains(retry.body, `{"partial":`) {
		t.Fatalf("retry replayed the truncated body as the response: %d %q", retry.status, retry.body)
	}
	if got := executions.Load(); got != 1 {
		t.Fatalf("executions = %d, want 1", got)
	}
}

// TestCloseEndsCallouts: Close cancels the module's callouts in flight and
// waits for them, and ends the streams they paused: nothing calls into a
// VM after Close returns.
func TestCloseEndsCallouts(t *testing.T) {
	// A cluster that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	wasm := readModule(t)
	cfg := readFile(t, lockConfig)
	// The longest callout timeout the policy allows: Close must not wait it out.
	cfg = []byte(strings.Replace(string(cfg), `"timeout": "500ms"`, `"timeout": "10s"`, 1))
	up := newTestUpstream(t)
	h, err := New(context.Background(), Config{
		Wasm: wasm, PluginConfig: cfg, Workers: 1,
		Clusters: map[string]string{"idemgate_controlplane": ln.Addr().String()},
		Upstream: up.addr(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/payments", strings.NewReader(`{"amount":1}`))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("authorization", "Bearer alice")
		req.Header.Set("idempotency-key", `"close"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	deadline := time.Now().Add(20 * time.Second)
	for h.calloutsInFlight.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reserve callout never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.Close()
	if n := h.calloutsInFlight.Load(); n != 0 {
		t.Fatalf("%d callouts still in flight after Close", n)
	}
	select {
	case status := <-done:
		if status == 201 {
			t.Fatalf("request paused on a callout got 201 after Close")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request paused on the callout never ended after Close")
	}
	if up.executions.Load() != 0 {
		t.Fatal("the request went upstream")
	}
}

// newHostWith is newHost with the host's limits set by cfg (Wasm, the
// plugin configuration, clusters and upstream are filled in).
func newHostWith(t *testing.T, cp *controlPlane, up *testUpstream, cfg Config) (*Host, string) {
	t.Helper()
	return newHostOn(t, cp, up, cfg, processModules)
}

// newHostOn is newHostWith on the given compilation cache.
func newHostOn(t *testing.T, cp *controlPlane, up *testUpstream, cfg Config, modules *moduleCache) (*Host, string) {
	t.Helper()
	if cfg.PluginConfig == nil {
		cfg.PluginConfig = readFile(t, lockConfig)
	}
	cfg.Wasm = readModule(t)
	cfg.Clusters = map[string]string{"idemgate_controlplane": cp.addr}
	cfg.Upstream = up.addr()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := newWithCache(context.Background(), cfg, modules)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

// TestResponseOverBufferLimit: the filter pauses a governed response to
// store it, and the upstream's body outgrows the buffer limit. Envoy
// (FilterManager::sendLocalReply once response headers exist but none went
// downstream) sends its 500 straight to the client, past the filter
// chain: the client gets the proxy's own 500 — none of the upstream's
// headers — and the module never sees that reply, so it cannot take the
// proxy's body for the upstream's and replay a chimera (the upstream's 201
// and headers with "Internal Server Error").
func TestResponseOverBufferLimit(t *testing.T) {
	cp := startControlPlane(t)
	var executions atomic.Int64
	// Over one body chunk (64 KiB), so that the filter is still buffering,
	// without end_of_stream, when the buffer limit is passed.
	big := `{"blob":"` + strings.Repeat("x", 100<<10) + `"}`
	up := &testUpstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		executions.Add(1)
		rw.Header().Set("content-type", "application/json")
		rw.Header().Set("x-upstream", "yes")
		rw.WriteHeader(201) // no content-length: the filter buffers to learn the size
		rw.Write([]byte(big))
	}))
	t.Cleanup(up.srv.Close)
	h, url := newHostWith(t, cp, up, Config{Workers: 1, BufferLimit: 4 << 10})

	r := post(t, url+"/payments", `"big"`, `{"amount":1}`)
	if r.status != 500 || r.body != "Internal Server Error" || r.header.Get("x-upstream") != "" ||
		r.header.Get("content-type") != "text/plain" || r.header.Get("content-length") != "21" {
		t.Errorf("over the buffer limit: %d %v %q, want Envoy's own 500 (text/plain, \"Internal Server Error\") without the upstream's headers", r.status, r.header, r.body)
	}
	waitStreamsDone(t, h)
	retry := post(t, url+"/payments", `"big"`, `{"amount":1}`)
	if strings.Contains(retry.body, "Internal Server Error") || (retry.status == 201 && retry.header.Get("content-type") == "text/plain") {
		t.Errorf("retry = %d %v %.100q: the proxy's reply was taken for the upstream's", retry.status, retry.header, retry.body)
	}
	if got := executions.Load(); got != 1 {
		t.Errorf("executions = %d, want 1", got)
	}
}

// TestLocalReplyMidResponse: a local reply after the module saw the
// response headers goes to the client as Envoy sends it — straight, with
// its own headers, when no response headers went downstream; as a reset
// after what went out when the module had continued the headers.
func TestLocalReplyMidResponse(t *testing.T) {
	tests := []struct {
		name       string
		sent       bool
		local      localReply
		wantReset  bool
		wantStatus int
		wantHeader [][2]string // name, value ("" = absent)
		wantBody   string
	}{
		{
			name:       "headers held: the proxy's 500, none of the upstream's headers",
			local:      localReply{status: 500, details: "response_payload_too_large", body: []byte("Internal Server Error")},
			wantStatus: 500,
			wantHeader: [][2]string{{"Content-Type", "text/plain"}, {"X-Upstream", ""}, {"Content-Length", "21"}},
			wantBody:   "Internal Server Error",
		},
		{
			name:       "headers held: the module's own reply and headers",
			local:      localReply{status: 409, details: "module", body: []byte(`{"t":1}`), headers: [][2]string{{"content-type", "application/problem+json"}}},
			wantStatus: 409,
			wantHeader: [][2]string{{"Content-Type", "application/problem+json"}, {"X-Upstream", ""}},
			wantBody:   `{"t":1}`,
		},
		{
			name:       "headers sent: reset after them",
			sent:       true,
			local:      localReply{status: 500, details: "response_payload_too_large", body: []byte("Internal Server Error")},
			wantReset:  true,
			wantStatus: 201,
			wantHeader: [][2]string{{"X-Upstream", "yes"}},
			wantBody:   "partial",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &worker{}
			s := &stream{respStatus: 201, respHeaders: [][2]string{{":status", "201"}, {"x-upstream", "yes"}, {"content-type", "application/json"}}}
			rec := httptest.NewRecorder()
			reset := func() (reset bool) {
				defer func() {
					if p := recover(); p != nil {
						if p != http.ErrAbortHandler {
							panic(p)
						}
						reset = true
					}
				}()
				lr := tt.local
				w.localReplyMidResponse(rec, s, &lr, tt.sent, []byte("partial"))
				return false
			}()
			if reset != tt.wantReset {
				t.Errorf("reset = %v, want %v", reset, tt.wantReset)
			}
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("client got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
			for _, h := range tt.wantHeader {
				if got := rec.Header().Get(h[0]); got != h[1] {
					t.Errorf("header %s = %q, want %q", h[0], got, h[1])
				}
			}
			if !s.responded || s.codeDetails != tt.local.details {
				t.Errorf("stream: responded %v, details %q; want true, %q (what proxy_on_log reads)", s.responded, s.codeDetails, tt.local.details)
			}
		})
	}
}

// TestCalloutOutlivesItsStream: as in proxy-wasm-cpp-host (proxy_http_call
// is made on the root context), a callout is the VM's, not the stream's:
// when the client that caused it goes away and its stream is deleted, the
// callout still reaches the control plane, its answer is read, and it is
// delivered to the root context (where the SDK drops it, the calling
// stream being gone).
func TestCalloutOutlivesItsStream(t *testing.T) {
	arrived, gate := make(chan struct{}, 1), make(chan struct{})
	answered := make(chan error, 1)
	var reserves atomic.Int32
	cluster := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/v1/reserve" || reserves.Add(1) != 1 {
			// Anything else (edge epoch polls, the release of a late
			// acquired) is answered at once.
			rw.Write([]byte(`{"epoch":1}`))
			return
		}
		arrived <- struct{}{}
		<-gate
		rw.Header().Set("content-type", "application/json")
		_, err := rw.Write([]byte(`{"outcome":"acquired","token":"t"}`))
		if err == nil {
			err = http.NewResponseController(rw).Flush()
		}
		if err == nil {
			err = r.Context().Err() // the host hung up before the answer
		}
		answered <- err
	}))
	t.Cleanup(cluster.Close)
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	cfg := readFile(t, lockConfig)
	cfg = []byte(strings.Replace(string(cfg), `"timeout": "500ms"`, `"timeout": "10s"`, 1)) // the longest the policy allows
	up := newTestUpstream(t)
	h, url := newHostWith(t, &controlPlane{addr: strings.TrimPrefix(cluster.URL, "http://")}, up, Config{Workers: 1, PluginConfig: cfg})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/payments", strings.NewReader(`{"amount":1}`))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("authorization", "Bearer alice")
		req.Header.Set("idempotency-key", `"gone"`)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the reserve callout never reached the cluster")
	}
	cancel() // the client goes away while its reserve is in flight
	<-done
	waitStreamsDone(t, h) // proxy_on_delete has run for the stream
	close(gate)
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("the cluster could not answer the callout of a deleted stream: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the cluster's handler never finished")
	}
	// Delivered to the root context (bounded wait: the host reads the
	// answer, then calls the module).
	for i := 0; h.calloutsAnswered("/v1/reserve") != 1; i++ {
		if i > 2000 {
			t.Fatalf("reserve answers delivered to the root context: %d, want 1 (dropped with its stream?)", h.calloutsAnswered("/v1/reserve"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if up.executions.Load() != 0 {
		t.Error("a request whose client left went upstream")
	}
	h.workers[0].mu.Lock()
	failed := h.workers[0].failed
	h.workers[0].mu.Unlock()
	if failed != nil {
		t.Errorf("the VM failed on the late answer: %v", failed)
	}
}

// TestMemoryReported: every VM's linear memory is reported, whole Wasm
// pages, never less than before, the same in Memory, /stats and /memory.
func TestMemoryReported(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	h, url := newHost(t, cp, up, 2)
	const page = 65536
	before := h.Memory()
	if len(before) != 2 {
		t.Fatalf("Memory() = %v, want 2 VMs", before)
	}
	// 900 KB of JSON through each VM (round robin), which each buffers
	// whole to fingerprint it (measured: 4.5 MiB → 9 MiB per VM).
	big := `{"pad":"` + strings.Repeat("x", 900_000) + `"}`
	for i := range 2 {
		if r := post(t, url+"/payments", fmt.Sprintf(`"mem-%d"`, i), big); r.status != 201 {
			t.Fatalf("POST = %d %s, want 201", r.status, r.body)
		}
	}
	after := h.Memory()
	t.Logf("before %v after %v", before, after)
	for i, m := range after {
		if m.Worker != i || m.Bytes == 0 || m.Bytes%page != 0 || m.Peak != m.Bytes || m.Bytes < before[i].Bytes {
			t.Errorf("VM %d: %+v (before %+v): want whole pages, peak = current (Wasm memory never shrinks), not less than before", i, m, before[i])
		}
	}
	admin := httptest.NewServer(h.AdminHandler())
	defer admin.Close()
	get := func(path string) string {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	stats := get("/stats")
	for _, m := range h.Memory() {
		for _, line := range []string{
			fmt.Sprintf("host.vm.%d.linear_memory_bytes: %d\n", m.Worker, m.Bytes),
			fmt.Sprintf("host.vm.%d.linear_memory_peak_bytes: %d\n", m.Worker, m.Peak),
		} {
			if !strings.Contains(stats, line) {
				t.Errorf("/stats lacks %q:\n%s", line, stats)
			}
		}
	}
	var got []VMMemory
	if err := json.Unmarshal([]byte(get("/memory")), &got); err != nil || len(got) != 2 || got[0] != h.Memory()[0] {
		t.Errorf("/memory = %v (%v), want %v", got, err, h.Memory())
	}
}
