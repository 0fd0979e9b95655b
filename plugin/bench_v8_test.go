//go:build !wasm

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// v8Harness is the V8 benchmark host (make bench-v8), relative to this
// package's directory.
const v8Harness = "bench/v8/guest_bench.mjs"

// runV8Harness runs the harness on the compiled module with a tiny N and
// returns its output and error. Node.js is required, as the wasm module is:
// `make deps` installs it.
func runV8Harness(t *testing.T, config string) ([]byte, []byte, error) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (Node.js runs the V8 benchmark harness; `make deps` installs it): %v", err)
	}
	if _, err := os.Stat(wasmPath); err != nil {
		t.Fatalf("%v (run `make wasm`)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // only against hangs
	defer cancel()
	// Node 18 (Debian 12's) needs the flag for node:wasi; later versions
	// accept it.
	cmd := exec.CommandContext(ctx, node, "--experimental-wasi-unstable-preview1", v8Harness, "--wasm", wasmPath, "--config", config,
		"--n", "20", "--runs", "2", "--warmup", "3", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.Bytes(), stderr.Bytes(), err
}

// TestV8Harness proves the V8 harness still drives every path of the
// current module: it checks each request itself (callouts, resumes, the
// replayed local response, the guest's counters) and exits non-zero on
// any surprise.
func TestV8Harness(t *testing.T) {
	stdout, stderr, err := runV8Harness(t, "policy/testdata/demo.json")
	if err != nil {
		t.Fatalf("harness: %v\nstderr: %s\nstdout: %s", err, stderr, stdout)
	}
	var r map[string]any
	if err := json.Unmarshal(stdout, &r); err != nil {
		t.Fatalf("harness output %q: %v", stdout, err)
	}
	for _, k := range []string{"pass_us", "miss_us", "replay_us", "direct_pass_us", "direct_miss_us", "direct_replay_us"} {
		v, ok := r[k].(float64)
		if !ok || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			t.Errorf("%s = %v, want a positive number of µs", k, r[k])
		}
	}
	if e, _ := r["engine"].(string); !strings.HasPrefix(e, "V8 ") {
		t.Errorf("engine = %q, want V8", r["engine"])
	}
}

// TestV8HarnessFailsLoudly: a policy under which /payments is not governed
// makes the "miss" a pass-through; the harness must refuse to time it.
func TestV8HarnessFailsLoudly(t *testing.T) {
	demo, err := os.ReadFile("policy/testdata/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(demo, []byte(`"/payments"`)) {
		t.Fatalf("demo.json no longer routes /payments")
	}
	config := filepath.Join(t.TempDir(), "ungoverned.json")
	if err := os.WriteFile(config, bytes.Replace(demo, []byte(`"/payments"`), []byte(`"/elsewhere"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runV8Harness(t, config)
	if err == nil {
		t.Fatalf("harness passed a miss path that reserved nothing; stdout %s", stdout)
	}
	if !strings.Contains(string(stderr), "FAIL: miss") {
		t.Errorf("harness failed with %v, stderr %q; want a FAIL naming the miss path", err, stderr)
	}
}
