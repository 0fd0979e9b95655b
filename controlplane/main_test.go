package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
	"github.com/idemgate/idemgate/internal/syncbuf"
)

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// An in-flight request finishes while Shutdown runs, and serve returns nil
// only after it has.
func TestServeDrainsInFlight(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "finished")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, newHTTPServer(config{OpTimeout: time.Second}, h, testLogger()), ln, 5*time.Second, testLogger())
	}()

	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, string(b), err}
	}()
	<-started
	cancel() // SIGTERM arrives while the request is in flight

	select {
	case err := <-served:
		t.Fatalf("serve returned (%v) before the in-flight request finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	a := <-answered
	if a.err != nil || a.status != 200 || a.body != "finished" {
		t.Fatalf("in-flight request = %d %q %v, want 200 finished", a.status, a.body, a.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve = %v, want nil after a clean drain", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts connections after shutdown")
	}
}

// Past the shutdown timeout, serve gives up on stuck requests and says so.
func TestServeShutdownTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, newHTTPServer(config{OpTimeout: time.Second}, h, testLogger()), ln, 100*time.Millisecond, testLogger())
	}()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "did not finish within 100ms") {
			t.Errorf("serve = %v, want a shutdown timeout error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after its shutdown timeout")
	}
}

func TestHTTPServerTimeouts(t *testing.T) {
	s := newHTTPServer(config{OpTimeout: 2 * time.Second}, http.NotFoundHandler(), testLogger())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Errorf("server timeouts unset: %+v", s)
	}
	if s.WriteTimeout <= s.ReadTimeout+2*time.Second {
		t.Errorf("WriteTimeout %v leaves no room after reading the body and a store call", s.WriteTimeout)
	}
}

// run wires everything: it serves the API on real Redis and stops cleanly.
func TestRun(t *testing.T) {
	rs := redistest.Start(t)
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := envMap(envToken, testToken, envRedisAddr, rs.Addr(), "IDEM_LOG_FORMAT", "json")
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, []string{"--listen", "127.0.0.1:0"}, env, logs) }()

	addr := waitListening(t, logs, exited)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+api.PathReserve,
		strings.NewReader(`{"scope":"s","key":"k","fingerprint":"fp"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res api.ReserveResponse
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || res.Outcome != api.Acquired {
		t.Fatalf("reserve through run = %d %+v %v", resp.StatusCode, res, err)
	}
	if resp, err := http.Get("http://" + addr + api.PathReadyz); err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz = %v %v", resp, err)
	}

	cancel()
	select {
	case code := <-exited:
		if code != exitOK {
			t.Errorf("run = %d after SIGTERM, want 0; log:\n%s", code, logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	for _, want := range []string{"shutting down", `"msg":"stopped"`, `"encryption_at_rest":false`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the log contains the token")
	}
}

func TestRunInsecureWarns(t *testing.T) {
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	// Redis is not needed to start: it is unreachable here on purpose.
	go func() {
		exited <- run(ctx, []string{"--insecure-no-auth", "--listen", "127.0.0.1:0", "--redis-url", "redis://127.0.0.1:1", "--log-format", "text"}, envMap(), logs)
	}()
	waitFor(t, logs, exited, "listening")
	cancel()
	if code := <-exited; code != exitOK {
		t.Errorf("run = %d", code)
	}
	out := logs.String()
	for _, want := range []string{"level=WARN msg=\"AUTHENTICATION IS OFF (--insecure-no-auth)", "Redis does not answer yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestRunBadConfig(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--lease", "nope"}, envMap(envToken, testToken), &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "controlplane: invalid value \"nope\" for flag -lease") {
		t.Errorf("run = %d, stderr %q; want 2 and the flag named", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), nil, envMap(), &stderr); code != exitUsage || !strings.Contains(stderr.String(), "no token") {
		t.Errorf("run without a token = %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--help"}, envMap(), &stderr); code != exitOK || !strings.Contains(stderr.String(), "-insecure-no-auth") {
		t.Errorf("run --help = %d, %q", code, stderr.String())
	}
	stderr.Reset()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if code := run(context.Background(), []string{"--listen", ln.Addr().String()}, envMap(envToken, testToken), &stderr); code != exitFailure || !strings.Contains(stderr.String(), "cannot listen") {
		t.Errorf("run on a taken port = %d, %q; want 1", code, stderr.String())
	}
}

func waitFor(t *testing.T, logs *syncbuf.Buffer, exited chan int, sub string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), sub) {
		select {
		case code := <-exited:
			t.Fatalf("run exited with %d before %q; log:\n%s", code, sub, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 10s:\n%s", sub, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitListening(t *testing.T, logs *syncbuf.Buffer, exited chan int) string {
	t.Helper()
	waitFor(t, logs, exited, "control plane listening")
	for _, line := range strings.Split(logs.String(), "\n") {
		var m struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "control plane listening" {
			return m.Addr
		}
	}
	t.Fatalf("no address in the log:\n%s", logs)
	return ""
}

// TestCheckEvictionPolicy: at start the service reads maxmemory-policy and
// warns unless it is noeviction (eviction can drop an in-progress or
// completed record: a second execution). A Redis that forbids CONFIG is
// no reason to warn or to fail.
func TestCheckEvictionPolicy(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantWarn bool
	}{
		{"default noeviction", nil, false},
		{"allkeys-lru", []string{"--maxmemory-policy", "allkeys-lru"}, true},
		{"volatile-ttl", []string{"--maxmemory-policy", "volatile-ttl"}, true},
		{"CONFIG forbidden", []string{"--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := redistest.Start(t, tt.args...)
			client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			logs := &syncbuf.Buffer{}
			log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			checkEvictionPolicy(ctx, client, log)
			warned := strings.Contains(logs.String(), `"level":"WARN"`)
			if warned != tt.wantWarn {
				t.Fatalf("warned %v, want %v; log:\n%s", warned, tt.wantWarn, logs)
			}
			if tt.wantWarn {
				policy := tt.args[1]
				for _, want := range []string{"maxmemory-policy", "noeviction", `"maxmemory_policy":"` + policy + `"`, rs.Addr()} {
					if !strings.Contains(logs.String(), want) {
						t.Errorf("warning lacks %q:\n%s", want, logs)
					}
				}
			}
		})
	}
}

// TestCheckEvictionPolicyCluster checks every master of a Cluster.
func TestCheckEvictionPolicyCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	odd := c.Servers()[1]
	if err := odd.Client().ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	client, err := store.NewClient("redis-cluster://"+strings.Join(c.Addrs(), ","), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	logs := &syncbuf.Buffer{}
	checkEvictionPolicy(ctx, client, slog.New(slog.NewJSONHandler(logs, nil)))
	if n := strings.Count(logs.String(), `"level":"WARN"`); n != 1 || !strings.Contains(logs.String(), odd.Addr()) {
		t.Errorf("want one warning naming %s; log:\n%s", odd.Addr(), logs)
	}
}

// TestRunWarnsOnEviction: run itself checks the policy once Redis answers.
func TestRunWarnsOnEviction(t *testing.T) {
	rs := redistest.Start(t, "--maxmemory-policy", "allkeys-lru")
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := envMap(envToken, testToken, envRedisAddr, rs.Addr(), "IDEM_LOG_FORMAT", "json")
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, []string{"--listen", "127.0.0.1:0"}, env, logs) }()
	waitFor(t, logs, exited, `"maxmemory_policy":"allkeys-lru"`)
	cancel()
	if code := <-exited; code != exitOK {
		t.Errorf("run = %d", code)
	}
}

// TestRunDurableFsyncRefusedOnRedis70: --durable-fsync needs WAITAOF
// (Redis 7.2); on this machine's 7.0 the service refuses to start, saying
// why, rather than answer 503 to every state change.
func TestRunDurableFsyncRefusedOnRedis70(t *testing.T) {
	rs := redistest.Start(t, "--appendonly", "yes")
	logs := &syncbuf.Buffer{}
	env := envMap(envToken, testToken, envRedisAddr, rs.Addr(), "IDEM_LOG_FORMAT", "json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"--listen", "127.0.0.1:0", "--durable-fsync", "--durable-replicas", "1"}, env, logs)
	if code != exitUsage || !strings.Contains(logs.String(), "--durable-fsync needs WAITAOF (Redis 7.2 or later)") {
		t.Fatalf("run = %d, want %d and the reason; log:\n%s", code, exitUsage, logs)
	}
	if strings.Contains(logs.String(), "control plane listening") && !strings.Contains(logs.String(), "durable mode cannot work") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestRunDurableLogsAndWatches: durable mode is logged at start, with the
// appendonly note, and the service serves (503 on a change: no replica).
func TestRunDurableLogsAndWatches(t *testing.T) {
	rs := redistest.Start(t)
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := envMap(envToken, testToken, envRedisAddr, rs.Addr(), "IDEM_LOG_FORMAT", "json",
		"IDEM_DURABLE_REPLICAS", "1", "IDEM_DURABLE_TIMEOUT", "20ms")
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, []string{"--listen", "127.0.0.1:0"}, env, logs) }()
	addr := waitListening(t, logs, exited)
	// The durable check runs after the listening line.
	waitFor(t, logs, exited, `appendonly is \"no\"`)
	for _, want := range []string{`"durable":"WAIT 1 20ms"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	resp, err := http.Get("http://" + addr + api.PathReadyz)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz without the replica durable mode needs: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + addr + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "idemgate_redis_failovers_total 0") {
		t.Errorf("/metrics lacks the failover counter")
	}
	cancel()
	if code := <-exited; code != exitOK {
		t.Errorf("run = %d", code)
	}
}

// TestRunReconciles: with --reconcile-url, run starts the reconciler: an
// abandoned key on a route that reconciles is looked up (with the
// credential from the environment) and released on "not executed", and a
// reserve naming a target without a URL is refused.
func TestRunReconciles(t *testing.T) {
	rs := redistest.Start(t)
	auth := make(chan string, 16)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case auth <- r.Header.Get("Authorization"):
		default:
		}
		io.WriteString(w, `{"outcome":"not_executed"}`)
	}))
	defer up.Close()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := envMap(envToken, testToken, envRedisAddr, rs.Addr(), "IDEMGATE_RECONCILE_TOKEN", "svc-credential-1")
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"--listen", "127.0.0.1:0", "--reconcile-url", up.URL + "/__idempotency/{attempt}",
			"--reconcile-delay", "1ms", "--reconcile-interval", "20ms"}, env, logs)
	}()
	addr := waitListening(t, logs, exited)
	post := func(path, body string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := post(api.PathReserve, `{"scope":"s","key":"o","fingerprint":"fp","on_indeterminate":"reconcile","reconcile_target":"orders"}`); code != 400 ||
		!strings.Contains(string(b), "no reconcile target orders is configured on this control plane") {
		t.Errorf("reserve naming an unconfigured target = %d %s, want 400", code, b)
	}
	reserve := `{"scope":"s","key":"k","fingerprint":"fp","on_indeterminate":"reconcile"}`
	code, b := post(api.PathReserve, reserve)
	var res api.ReserveResponse
	if err := json.Unmarshal(b, &res); code != 200 || err != nil || res.Outcome != api.Acquired {
		t.Fatalf("reserve = %d %s", code, b)
	}
	if code, b := post(api.PathAbandon, `{"scope":"s","key":"k","token":"`+res.Token+`"}`); code != 200 {
		t.Fatalf("abandon = %d %s", code, b)
	}
	// The reconciler releases the key: a retry acquires it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, b := post(api.PathReserve, reserve)
		if json.Unmarshal(b, &res) == nil && res.Outcome == api.Acquired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key was not released within 30s; last reserve %s; log:\n%s", b, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := <-auth; got != "Bearer svc-credential-1" {
		t.Errorf("lookup sent Authorization %q", got)
	}
	resp, err := http.Get("http://" + addr + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`idemgate_reconcile_applied_total{effect="released"} 1`, `idemgate_reconcile_answers_total{answer="not_executed",target="default"} 1`} {
		if !strings.Contains(string(m), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	cancel()
	select {
	case code := <-exited:
		if code != exitOK {
			t.Errorf("run = %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if !strings.Contains(logs.String(), `"reconcile_targets":["default"]`) {
		t.Errorf("the start line does not name the reconcile targets:\n%s", logs)
	}
	if strings.Contains(logs.String(), "svc-credential-1") {
		t.Error("the log contains the reconcile credential")
	}
}
