package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
)

// syncBuffer is a bytes.Buffer safe for the demo's and the test's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

// The demo comes up, serves the printed curl's request, and stops every
// component when its context ends (what SIGINT does).
func TestDemoRunsAndStops(t *testing.T) {
	getenv := freeEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, demoArgs(t), getenv, &stdout, &stderr) }()

	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(stdout.String(), "Logs:") {
		select {
		case c := <-code:
			t.Fatalf("demo exited %d before it was up:\n%s", c, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("demo not up after 2 minutes:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := stdout.String()
	for _, want := range []string{"curl -i http://" + getenv("IDEM_GATEWAY_ADDR") + "/payments", "Idempotency-Key", "controlplane", ".log"} {
		if !strings.Contains(out, want) {
			t.Errorf("welcome text lacks %q:\n%s", want, out)
		}
	}
	req, _ := http.NewRequest("POST", "http://"+getenv("IDEM_GATEWAY_ADDR")+"/payments", strings.NewReader(`{"amount":1000,"currency":"EUR"}`))
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("Idempotency-Key", `"order-1"`)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("first curl: %s %s, want 201", resp.Status, body)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d after a stop, want 0:\n%s", c, stderr.String())
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

func TestDemoNamesTheVariableOfATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	getenv := freeEnv(t, map[string]string{"IDEM_UPSTREAM_ADDR": l.Addr().String()})
	var stdout, stderr syncBuffer
	if c := run(context.Background(), demoArgs(t), getenv, &stdout, &stderr); c != 1 {
		t.Errorf("exit %d, want 1", c)
	}
	if !strings.Contains(stderr.String(), "set IDEM_UPSTREAM_ADDR to a free address") {
		t.Errorf("stderr does not name the variable:\n%s", stderr.String())
	}
}
