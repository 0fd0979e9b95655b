package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
	"github.com/idemgate/idemgate/e2e/upstream"
	"github.com/idemgate/idemgate/internal/syncbuf"
)

func demoArgs(t *testing.T) []string {
	return []string{"-build", "../../../build", "-policy", "../../../plugin/policy/testdata/demo.json", "-logs", t.TempDir()}
}

func freeEnv(t *testing.T, override map[string]string) func(string) string {
	env := map[string]string{}
	for _, n := range []string{"IDEM_GATEWAY_ADDR", "IDEM_CONTROLPLANE_ADDR", "IDEM_UPSTREAM_ADDR"} {
		a, err := stack.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		env[n] = a
	}
	for k, v := range override {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

// demo is a demo running in the background, as `make demo` runs it.
type demo struct {
	stdout, stderr syncbuf.Buffer
	code           chan int
	cancel         context.CancelFunc
}

// startDemo runs the demo with args until it prints its welcome text.
func startDemo(t *testing.T, args []string, getenv func(string) string) *demo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &demo{code: make(chan int, 1), cancel: cancel}
	go func() { d.code <- run(ctx, args, getenv, &d.stdout, &d.stderr) }()
	t.Cleanup(cancel)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(d.stdout.String(), "Logs:") {
		select {
		case c := <-d.code:
			t.Fatalf("demo exited %d before it was up:\n%s", c, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("demo not up after 2 minutes:\n%s", d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// stop ends the demo as SIGINT does and wants exit 0 and every address
// in getenv closed.
func (d *demo) stop(t *testing.T, getenv func(string) string) {
	t.Helper()
	d.cancel()
	select {
	case c := <-d.code:
		if c != 0 {
			t.Errorf("exit %d after a stop, want 0:\n%s", c, d.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("demo did not stop")
	}
	for _, n := range []string{"IDEM_GATEWAY_ADDR", "IDEM_CONTROLPLANE_ADDR", "IDEM_UPSTREAM_ADDR"} {
		if c, err := net.DialTimeout("tcp", getenv(n), time.Second); err == nil {
			c.Close()
			t.Errorf("%s %s still answers after the demo stopped", n, getenv(n))
		}
	}
}

// pay sends the welcome text's curl with body.
func pay(t *testing.T, gateway, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+gateway+"/payments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("Idempotency-Key", `"order-1"`)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// The demo comes up, serves the printed curl's request, and stops every
// component when its context ends (what SIGINT does).
func TestDemoRunsAndStops(t *testing.T) {
	getenv := freeEnv(t, nil)
	d := startDemo(t, demoArgs(t), getenv)
	out := d.stdout.String()
	for _, want := range []string{"curl -i http://" + getenv("IDEM_GATEWAY_ADDR") + "/payments", "Idempotency-Key", "controlplane", ".log"} {
		if !strings.Contains(out, want) {
			t.Errorf("welcome text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(d.stderr.String(), "EMBEDDED") {
		t.Errorf("the embedded store was announced although redis-server is installed:\n%s", d.stderr.String())
	}
	if resp, body := pay(t, getenv("IDEM_GATEWAY_ADDR"), `{"amount":1000,"currency":"EUR"}`); resp.StatusCode != 201 {
		t.Errorf("first curl: %s %s, want 201", resp.Status, body)
	}
	dropThenReplay(t, out, getenv("IDEM_GATEWAY_ADDR"), getenv("IDEM_UPSTREAM_ADDR"))
	d.stop(t, getenv)
}

// dropThenReplay walks the welcome text's steps 4 and 5: a payment whose
// answer the upstream drops after executing, then its retry, which the
// control plane's lookup turns into a replay of that payment.
func dropThenReplay(t *testing.T, welcome, gw, upstreamAddr string) {
	t.Helper()
	for _, want := range []string{"-H '" + upstream.HeaderDrop + ": 1'", "Idempotency-Key: \"order-2\"", "/__idempotency/{attempt}"} {
		if !strings.Contains(welcome, want) {
			t.Errorf("welcome text lacks %q:\n%s", want, welcome)
		}
	}
	before := executionCount(t, upstreamAddr)
	send := func(drop bool) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("POST", "http://"+gw+"/payments", strings.NewReader(`{"amount":500,"currency":"EUR"}`))
		req.Header.Set("Authorization", "Bearer alice")
		req.Header.Set("Idempotency-Key", `"order-2"`)
		req.Header.Set("Content-Type", "application/json")
		if drop {
			req.Header.Set(upstream.HeaderDrop, "1")
		}
		// A new connection each time: net/http must not re-send the POST.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	if resp, body, err := send(true); err == nil && resp.StatusCode < 500 {
		t.Fatalf("step 4: %s %s, want a 5xx (the answer was dropped)", resp.Status, body)
	}
	// Step 5, retried as a person would: 409 while the lookup is due,
	// then the replay. Bounded at 10 s (the lookup is due 1 s after the
	// abandon).
	var last string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, body, err := send(false)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 201 {
			if resp.Header.Get("Idempotent-Replayed") != "true" || !strings.Contains(string(body), `"id":"pay_`) {
				t.Errorf("step 5: %s %v %s, want the dropped payment replayed", resp.Status, resp.Header, body)
			}
			break
		}
		last = fmt.Sprintf("%s Retry-After %q %s", resp.Status, resp.Header.Get("Retry-After"), body)
		if resp.StatusCode != 409 {
			t.Fatalf("step 5: %s, want 409 then the replay", last)
		}
		if time.Now().After(deadline) {
			t.Fatalf("step 5: still %s after 10 s, want the replay", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := executionCount(t, upstreamAddr) - before; n != 1 {
		t.Errorf("steps 4 and 5 executed %d times, want once", n)
	}
}

// executionCount is the demo upstream's GET /__executions.
func executionCount(t *testing.T, upstreamAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + upstreamAddr + "/__executions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Count *int }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Count == nil {
		t.Fatalf("GET /__executions: %v", err)
	}
	return *v.Count
}

// Without redis-server (forced here with -embedded-redis, since this
// machine has one) the demo runs on the embedded store, says so loudly,
// and a governed request executes once and is replayed through the gateway.
func TestDemoOnTheEmbeddedStore(t *testing.T) {
	getenv := freeEnv(t, nil)
	args := append(demoArgs(t), "-embedded-redis")
	d := startDemo(t, args, getenv)
	for _, want := range []string{"WARNING", "EMBEDDED DEV-ONLY STORE", "LOST ON EXIT", "not Redis", "no Cluster", "apt-get install -y redis-server"} {
		if !strings.Contains(d.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, d.stderr.String())
		}
	}
	if out := d.stdout.String(); !strings.Contains(out, "EMBEDDED DEV-ONLY STORE") || strings.Contains(out, "redis.log") {
		t.Errorf("welcome text should name the embedded store as Redis, without a redis-server log:\n%s", out)
	}

	gw := getenv("IDEM_GATEWAY_ADDR")
	first, firstBody := pay(t, gw, `{"amount":1000,"currency":"EUR"}`)
	if first.StatusCode != 201 || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first call: %s %v %s, want 201 executed", first.Status, first.Header, firstBody)
	}
	for i := 0; i < 2; i++ {
		retry, body := pay(t, gw, `{ "currency": "EUR", "amount": 1000.0 }`)
		if retry.StatusCode != 201 || retry.Header.Get("Idempotent-Replayed") != "true" || string(body) != string(firstBody) {
			t.Errorf("retry %d: %s %v %s, want the first answer replayed", i, retry.Status, retry.Header, body)
		}
	}
	if other, body := pay(t, gw, `{"amount":2000,"currency":"EUR"}`); other.StatusCode != 422 {
		t.Errorf("other payload: %s %s, want 422", other.Status, body)
	}
	resp, err := http.Get("http://" + getenv("IDEM_UPSTREAM_ADDR") + "/__executions")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != `{"count":1}` {
		t.Errorf("executions %s, want 1", b)
	}
	// The reconcile index and its scripts on the embedded store.
	dropThenReplay(t, d.stdout.String(), gw, getenv("IDEM_UPSTREAM_ADDR"))
	d.stop(t, getenv)
}

func TestDemoNamesTheVariableOfATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	getenv := freeEnv(t, map[string]string{"IDEM_UPSTREAM_ADDR": l.Addr().String()})
	var stdout, stderr syncbuf.Buffer
	if c := run(context.Background(), demoArgs(t), getenv, &stdout, &stderr); c != 1 {
		t.Errorf("exit %d, want 1", c)
	}
	if !strings.Contains(stderr.String(), "set IDEM_UPSTREAM_ADDR to a free address") {
		t.Errorf("stderr does not name the variable:\n%s", stderr.String())
	}
}

// pidOf reads a component's pid from the welcome text's line for it.
func pidOf(t *testing.T, welcome, label string) int {
	t.Helper()
	for _, line := range strings.Split(welcome, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), label+" ") {
			continue
		}
		if _, after, ok := strings.Cut(line, "pid "); ok {
			end := strings.IndexFunc(after, func(r rune) bool { return r < '0' || r > '9' })
			if end < 0 {
				end = len(after)
			}
			if n, err := strconv.Atoi(after[:end]); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no pid for %s in the welcome text:\n%s", label, welcome)
	return 0
}

// waitFor waits (bounded) until the demo's stderr contains s.
func (d *demo) waitFor(t *testing.T, s string) {
	t.Helper()
	for i := 0; i < 1200; i++ {
		if strings.Contains(d.stderr.String(), s) {
			return
		}
		select {
		case c := <-d.code:
			t.Fatalf("demo exited %d while waiting for %q:\n%s", c, s, d.stderr.String())
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stderr never said %q:\n%s", s, d.stderr.String())
}

// kill -9 on the control plane, the upstream and the private
// redis-server, by the pids the welcome text prints: the demo names each,
// restarts it, keeps the gateway running and serves again; Ctrl-C still
// stops everything.
func TestDemoRestartsWhatDies(t *testing.T) {
	getenv := freeEnv(t, nil)
	d := startDemo(t, append(demoArgs(t), "-restart-delay", "100ms"), getenv)
	welcome := d.stdout.String()
	gwPid := pidOf(t, welcome, "gateway")
	gw := getenv("IDEM_GATEWAY_ADDR")
	if resp, body := pay(t, gw, `{"amount":1000,"currency":"EUR"}`); resp.StatusCode != 201 {
		t.Fatalf("first payment: %s %s", resp.Status, body)
	}
	for _, c := range []struct{ label, role string }{
		{"control plane", stack.RoleControlPlane},
		{"upstream", stack.RoleUpstream},
		{"redis", stack.RoleRedis},
	} {
		pid := pidOf(t, welcome, c.label)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.waitFor(t, "demo: "+c.role+" died (signal: killed)")
		d.waitFor(t, "demo: "+c.role+" is back (pid ")
	}
	if err := syscall.Kill(gwPid, 0); err != nil {
		t.Errorf("the gateway (pid %d) is gone: %v", gwPid, err)
	}
	// The first payment replays; a new key executes (bounded: the control
	// plane reconnects to the restarted Redis on its own).
	if resp, body := pay(t, gw, `{"amount":1000,"currency":"EUR"}`); resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay after the restarts: %s %v %s", resp.Status, resp.Header, body)
	}
	var status int
	for i := 0; i < 100 && status != 201; i++ {
		req, _ := http.NewRequest("POST", "http://"+gw+"/payments", strings.NewReader(`{"amount":5}`))
		req.Header.Set("Authorization", "Bearer alice")
		req.Header.Set("Idempotency-Key", `"after-restarts"`)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if status = resp.StatusCode; status != 201 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if status != 201 {
		t.Errorf("new key after the restarts: %d, want 201", status)
	}
	d.stop(t, getenv)
}
