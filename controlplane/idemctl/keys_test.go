package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
)

const adminToken = "test-admin-token"

// keysEnv is a real control plane (server, store, private redis-server)
// that the keys commands talk to over loopback HTTP.
type keysEnv struct {
	st    *store.Store
	addr  string
	redis string // the redis-server's host:port
	// lookups answers the control plane's reconcile lookups: key → the
	// upstream's answer (HTTP 200); a key without one gets a 503.
	lookups sync.Map
}

func newKeysEnv(t *testing.T) *keysEnv {
	t.Helper()
	rs := redistest.Start(t)
	client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	st := store.New(client, store.Options{})
	e := &keysEnv{st: st, redis: rs.Addr()}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q api.ReconcileQuery
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			t.Errorf("lookup: %v", err)
		}
		a, ok := e.lookups.Load(q.Key)
		if !ok {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, a.(string))
	}))
	t.Cleanup(up.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lookup := reconcile.NewClient([]reconcile.Target{{Name: reconcile.DefaultTarget, Template: up.URL + "/{attempt}"}}, nil, 10*time.Second, 1<<16)
	srv, err := server.New(st, server.Options{Token: adminToken, Logger: log,
		Reconciler: reconcile.New(st, lookup, reconcile.Options{Logger: log})})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	e.addr = ts.URL
	return e
}

// seed creates a record: in progress, or completed with a 201.
func (e *keysEnv) seed(t *testing.T, key string, completed bool) {
	t.Helper()
	ctx := context.Background()
	res, err := e.st.Reserve(ctx, api.ReserveRequest{Scope: "tenant-1", Key: key, Fingerprint: "sha256:aa"})
	if err != nil || res.Outcome != api.Acquired {
		t.Fatalf("seed reserve: %+v, %v", res, err)
	}
	if completed {
		err := e.st.Complete(ctx, api.CompleteRequest{Scope: "tenant-1", Key: key, Token: res.Token,
			Response: api.StoredResponse{Status: 201, Body: []byte(`{"id":"pay_1"}`)}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (e *keysEnv) exists(t *testing.T, key string) bool {
	t.Helper()
	_, err := e.st.Get(context.Background(), "tenant-1", key, false)
	return err == nil
}

func (e *keysEnv) keys(t *testing.T, args ...string) (invocation, map[string]any) {
	t.Helper()
	args = append(args, "--addr", e.addr, "--token", adminToken, "--scope", "tenant-1", "--json")
	inv := invoke(t, "", args...)
	var out map[string]any
	if err := json.Unmarshal([]byte(inv.stdout), &out); err != nil {
		t.Fatalf("idemctl %v: stdout %q is not one JSON object: %v", args, inv.stdout, err)
	}
	return inv, out
}

func TestKeysCommands(t *testing.T) {
	e := newKeysEnv(t)
	e.seed(t, "held", false)
	e.seed(t, "done", true)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantEffect string // "" when the command fails
		wantError  string // error code when it fails
		held, done bool   // which records exist afterwards
	}{
		{"get in progress", []string{"keys", "get", "--key", "held"}, 0, "noop", "", true, true},
		{"get completed", []string{"keys", "get", "--key", "done"}, 0, "noop", "", true, true},
		{"get absent", []string{"keys", "get", "--key", "nope"}, 1, "", "not_found", true, true},
		{"dry-run delete", []string{"keys", "delete", "--key", "done", "--dry-run"}, 0, "would_delete", "", true, true},
		{"dry-run delete absent", []string{"keys", "delete", "--key", "nope", "--dry-run"}, 0, "noop", "", true, true},
		// "held" is in progress with its lease running: the request may
		// still execute, so freeing it needs --force (dry runs say so).
		{"dry-run release of a live lease refused", []string{"keys", "release", "--key", "held", "--dry-run"}, 1, "", "lease_live", true, true},
		{"release of a live lease refused", []string{"keys", "release", "--key", "held"}, 1, "", "lease_live", true, true},
		{"delete of a live lease refused", []string{"keys", "delete", "--key", "held"}, 1, "", "lease_live", true, true},
		{"dry-run delete of a live lease refused", []string{"keys", "delete", "--key", "held", "--dry-run"}, 1, "", "lease_live", true, true},
		{"dry-run forced delete", []string{"keys", "delete", "--key", "held", "--dry-run", "--force"}, 0, "would_delete", "", true, true},
		{"dry-run forced release", []string{"keys", "release", "--key", "held", "--dry-run", "--force"}, 0, "would_release", "", true, true},
		{"release completed refused", []string{"keys", "release", "--key", "done"}, 1, "", "conflict", true, true},
		{"forced release", []string{"keys", "release", "--key", "held", "--force"}, 0, "released", "", false, true},
		{"release again is a noop", []string{"keys", "release", "--key", "held"}, 0, "noop", "", false, true},
		{"delete", []string{"keys", "delete", "--key", "done"}, 0, "deleted", "", false, false},
		{"delete again is a noop", []string{"keys", "delete", "--key", "done"}, 0, "noop", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, out := e.keys(t, tt.args...)
			if inv.code != tt.wantCode {
				t.Errorf("exit %d, want %d (stdout %s)", inv.code, tt.wantCode, inv.stdout)
			}
			if tt.wantEffect != "" && out["effect"] != tt.wantEffect {
				t.Errorf("effect = %v, want %s", out["effect"], tt.wantEffect)
			}
			if tt.wantError != "" {
				errObj, _ := out["error"].(map[string]any)
				if errObj["code"] != tt.wantError {
					t.Errorf("error = %v, want code %s", out["error"], tt.wantError)
				}
			}
			if got := e.exists(t, "held"); got != tt.held {
				t.Errorf("held exists = %v, want %v", got, tt.held)
			}
			if got := e.exists(t, "done"); got != tt.done {
				t.Errorf("done exists = %v, want %v", got, tt.done)
			}
		})
	}
}

func TestKeysGetShowsRecordNotBody(t *testing.T) {
	e := newKeysEnv(t)
	e.seed(t, "done", true)
	_, out := e.keys(t, "keys", "get", "--key", "done")
	rec, _ := out["record"].(map[string]any)
	if rec["state"] != "completed" || rec["fingerprint"] != storedSHA("sha256:aa") || rec["status"] != float64(201) {
		t.Errorf("record = %v", rec)
	}
	if _, ok := rec["response"]; ok {
		t.Errorf("body shown without --body: %v", rec)
	}
	_, out = e.keys(t, "keys", "get", "--key", "done", "--body")
	rec, _ = out["record"].(map[string]any)
	if resp, _ := rec["response"].(map[string]any); resp == nil || resp["body"] == nil {
		t.Errorf("--body: record = %v, want the stored response", rec)
	}
	// Text output is for people: key facts, one per line.
	inv := invoke(t, "", "keys", "get", "--addr", e.addr, "--token", adminToken, "--scope", "tenant-1", "--key", "done")
	if inv.code != 0 || !strings.Contains(inv.stdout, "state:        completed") || !strings.Contains(inv.stdout, "status:       201") {
		t.Errorf("text output: exit %d\n%s", inv.code, inv.stdout)
	}
}

func TestKeysFailures(t *testing.T) {
	e := newKeysEnv(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"wrong token", []string{"keys", "get", "--addr", e.addr, "--token", "wrong", "--scope", "s", "--key", "k"}, 1, "unauthorized"},
		{"no control plane", []string{"keys", "delete", "--addr", "127.0.0.1:1", "--scope", "s", "--key", "k"}, 1, "unavailable"},
		{"missing key", []string{"keys", "delete", "--addr", e.addr, "--scope", "s"}, 2, "usage"},
		{"control character in key", []string{"keys", "get", "--addr", e.addr, "--scope", "s", "--key", "a\nb"}, 2, "usage"},
		{"bad address", []string{"keys", "get", "--addr", "ftp://x", "--scope", "s", "--key", "k"}, 2, "usage"},
		{"dry-run is for mutations", []string{"keys", "get", "--addr", e.addr, "--scope", "s", "--key", "k", "--dry-run"}, 2, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := invoke(t, "", append(tt.args, "--json")...)
			var out struct {
				OK    bool
				Error struct{ Code string }
			}
			if err := json.Unmarshal([]byte(inv.stdout), &out); err != nil {
				t.Fatalf("stdout %q: %v", inv.stdout, err)
			}
			if inv.code != tt.wantCode || out.OK || out.Error.Code != tt.wantErr {
				t.Errorf("exit %d, %+v; want exit %d, code %s", inv.code, out, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// storedSHA is what the control plane keeps of a fingerprint without a
// fingerprint key: "s1:" + hex(SHA-256).
func storedSHA(fp string) string {
	sum := sha256.Sum256([]byte(fp))
	return "s1:" + hex.EncodeToString(sum[:])
}

func TestKeysList(t *testing.T) {
	e := newKeysEnv(t)
	ctx := context.Background()
	e.seed(t, "held", false)
	e.seed(t, "done", true)
	for _, k := range []string{"lost-1", "lost-2", "lost-3"} {
		res, err := e.st.Reserve(ctx, api.ReserveRequest{Scope: "tenant-1", Key: k, Fingerprint: "sha256:aa"})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.st.Abandon(ctx, api.AbandonRequest{Scope: "tenant-1", Key: k, Token: res.Token}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.Reserve(ctx, api.ReserveRequest{Scope: "tenant-2", Key: "elsewhere", Fingerprint: "sha256:aa"}); err != nil {
		t.Fatal(err)
	}
	keysOf := func(out map[string]any) []string {
		var got []string
		recs, _ := out["records"].([]any)
		for _, r := range recs {
			m, _ := r.(map[string]any)
			if _, ok := m["response"]; ok {
				t.Errorf("listing shows a response: %v", m)
			}
			got = append(got, m["scope"].(string)+"/"+m["key"].(string))
		}
		return got
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"indeterminate, paged one key at a time", []string{"keys", "list", "--state", "indeterminate", "--page", "1"}, "[tenant-1/lost-1 tenant-1/lost-2 tenant-1/lost-3]"},
		{"in progress of the scope", []string{"keys", "list", "--state", "in_progress"}, "[tenant-1/held]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, out := e.keys(t, tt.args...)
			if inv.code != 0 || out["ok"] != true {
				t.Fatalf("exit %d: %s", inv.code, inv.stdout)
			}
			if got := fmt.Sprint(keysOf(out)); got != tt.want {
				t.Errorf("listed %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("every scope, as text", func(t *testing.T) {
		inv := invoke(t, "", "keys", "list", "--state", "in_progress", "--addr", e.addr, "--token", adminToken)
		if inv.code != 0 || !strings.HasPrefix(inv.stdout, "2 in_progress record(s)") ||
			!strings.Contains(inv.stdout, `"tenant-2" "elsewhere"`) || !strings.Contains(inv.stdout, `"tenant-1" "held"`) {
			t.Errorf("exit %d, stdout:\n%s", inv.code, inv.stdout)
		}
	})
	t.Run("bad state is a usage error", func(t *testing.T) {
		inv := invoke(t, "", "keys", "list", "--state", "completed", "--addr", e.addr)
		if inv.code != 2 || !strings.Contains(inv.stderr, "--state") {
			t.Errorf("exit %d stderr %q, want 2 naming --state", inv.code, inv.stderr)
		}
	})
}

// TestKeysMutationsPrintEdgeBound: delete and release say within what the
// edge caches stop replaying; a dry run does not.
func TestKeysMutationsPrintEdgeBound(t *testing.T) {
	e := newKeysEnv(t)
	e.seed(t, "done", true)
	e.seed(t, "held", false)
	_, out := e.keys(t, "keys", "delete", "--key", "done", "--dry-run")
	if _, ok := out["edge_caches_stop_within"]; ok {
		t.Errorf("dry run prints an edge bound: %v", out)
	}
	for _, args := range [][]string{{"keys", "delete", "--key", "done"}, {"keys", "release", "--key", "held", "--force"}} {
		_, out := e.keys(t, args...)
		b, _ := out["edge_caches_stop_within"].(string)
		if !strings.HasPrefix(b, api.EdgeEpochPoll.String()) || !strings.Contains(b, "control-plane timeout") {
			t.Errorf("%v: edge bound %q", args, b)
		}
	}
	inv := invoke(t, "", "keys", "delete", "--key", "done", "--scope", "tenant-1", "--addr", e.addr, "--token", adminToken)
	if !strings.Contains(inv.stdout, "edge caches stop replaying it within 1s") {
		t.Errorf("text output %q lacks the bound", inv.stdout)
	}
}

func TestKeysVerboseNamesRedisNode(t *testing.T) {
	e := newKeysEnv(t)
	e.seed(t, "done", true)
	common := []string{"--addr", e.addr, "--token", adminToken, "--scope", "tenant-1", "--key", "done"}
	tests := []struct {
		name string
		args []string
		code int
		want string // on stderr; "" means no verbose line at all
	}{
		{"get", []string{"keys", "get", "--verbose"}, 0, "GET /v1/admin/keys: HTTP 200, redis node " + e.redis + "\n"},
		{"get with --json keeps stdout one object", []string{"keys", "get", "--verbose", "--json"}, 0, "redis node " + e.redis + "\n"},
		{"get quiet without --verbose", []string{"keys", "get"}, 0, ""},
		// delete and the edge-epoch bump ran on one node: named once.
		{"delete", []string{"keys", "delete", "--verbose"}, 0, "DELETE /v1/admin/keys: HTTP 200, redis node " + e.redis + "\n"},
		{"get absent still names the node", []string{"keys", "get", "--verbose"}, 1, "HTTP 404, redis node " + e.redis + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := invoke(t, "", append(tt.args, common...)...)
			if inv.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", inv.code, tt.code, inv.stderr)
			}
			if tt.want == "" {
				if strings.Contains(inv.stderr, "redis node") {
					t.Errorf("stderr %q names a node without --verbose", inv.stderr)
				}
				return
			}
			if !strings.Contains(inv.stderr, tt.want) {
				t.Errorf("stderr %q, want it to contain %q", inv.stderr, tt.want)
			}
		})
	}
	inv := invoke(t, "", "keys", "list", "--state", "in_progress", "--verbose", "--addr", e.addr, "--token", adminToken)
	if inv.code != 0 || !strings.Contains(inv.stderr, "GET /v1/admin/keys/list: HTTP 200, redis node "+e.redis) {
		t.Errorf("keys list --verbose: exit %d, stderr %q", inv.code, inv.stderr)
	}
}

// abandoned makes key an abandoned record of a route that reconciles, or
// of one that locks.
func (e *keysEnv) abandoned(t *testing.T, key, onIndeterminate string) {
	t.Helper()
	ctx := context.Background()
	res, err := e.st.Reserve(ctx, api.ReserveRequest{Scope: "tenant-1", Key: key, Fingerprint: "sha256:aa", OnIndeterminate: onIndeterminate})
	if err != nil || res.Outcome != api.Acquired {
		t.Fatalf("reserve: %+v, %v", res, err)
	}
	if err := e.st.Abandon(ctx, api.AbandonRequest{Scope: "tenant-1", Key: key, Token: res.Token}); err != nil {
		t.Fatal(err)
	}
}

func TestKeysReconcile(t *testing.T) {
	e := newKeysEnv(t)
	e.abandoned(t, "lost", api.LeaseReconcile)
	e.lookups.Store("lost", `{"outcome":"not_executed"}`)
	e.abandoned(t, "paid", api.LeaseReconcile)
	e.lookups.Store("paid", `{"outcome":"executed","response":{"status":201,"body":"eyJpZCI6InBheV8xIn0="}}`)
	e.abandoned(t, "busy", api.LeaseReconcile) // its lookup answers 503
	e.abandoned(t, "locked", api.LeaseLock)
	if res, err := e.st.Reserve(context.Background(), api.ReserveRequest{Scope: "tenant-1", Key: "live", Fingerprint: "sha256:aa", OnIndeterminate: api.LeaseReconcile}); err != nil || res.Outcome != api.Acquired {
		t.Fatalf("reserve live: %+v, %v", res, err)
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantEffect string
		wantError  string
		wantAnswer string // the answer's outcome
		state      string // of lost afterwards: "" = absent
	}{
		{"dry run, key as the argument", []string{"keys", "reconcile", "lost", "--dry-run"}, 0, "would_release", "", "not_executed", "indeterminate"},
		{"dry run, key as a flag", []string{"keys", "reconcile", "--key", "lost", "--dry-run"}, 0, "would_release", "", "not_executed", "indeterminate"},
		{"executed", []string{"keys", "reconcile", "paid"}, 0, "completed", "", "executed", "indeterminate"},
		{"failed lookup", []string{"keys", "reconcile", "busy"}, 1, "", "unavailable", "", "indeterminate"},
		{"route that locks", []string{"keys", "reconcile", "locked"}, 1, "", "conflict", "", "indeterminate"},
		{"live lease", []string{"keys", "reconcile", "live"}, 1, "", "lease_live", "", "indeterminate"},
		{"key twice", []string{"keys", "reconcile", "lost", "--key", "lost"}, 2, "", "usage", "", "indeterminate"},
		{"no force for reconcile", []string{"keys", "reconcile", "lost", "--force"}, 2, "", "usage", "", "indeterminate"},
		{"not executed", []string{"keys", "reconcile", "lost"}, 0, "released", "", "not_executed", ""},
		{"again: noop", []string{"keys", "reconcile", "lost"}, 0, "noop", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, out := e.keys(t, tt.args...)
			if inv.code != tt.wantCode {
				t.Errorf("exit %d, want %d (stdout %s)", inv.code, tt.wantCode, inv.stdout)
			}
			if tt.wantEffect != "" && out["effect"] != tt.wantEffect {
				t.Errorf("effect = %v, want %s", out["effect"], tt.wantEffect)
			}
			if tt.wantError != "" {
				errObj, _ := out["error"].(map[string]any)
				if errObj["code"] != tt.wantError {
					t.Errorf("error = %v, want code %s", out["error"], tt.wantError)
				}
				if msg, _ := errObj["message"].(string); strings.Contains(msg, "--force") {
					t.Errorf("message %q suggests --force, which reconcile lacks", msg)
				}
			}
			answer, _ := out["answer"].(map[string]any)
			if got, _ := answer["outcome"].(string); got != tt.wantAnswer {
				t.Errorf("answer = %v, want outcome %q", out["answer"], tt.wantAnswer)
			}
			rec, err := e.st.Get(context.Background(), "tenant-1", "lost", false)
			switch {
			case tt.state == "" && err == nil:
				t.Errorf("lost is still %s", rec.State)
			case tt.state != "" && (err != nil || string(rec.State) != tt.state):
				t.Errorf("lost: %+v, %v; want %s", rec, err, tt.state)
			}
		})
	}
	if rec, err := e.st.Get(context.Background(), "tenant-1", "paid", false); err != nil || rec.State != api.StateCompleted || rec.Status != 201 {
		t.Errorf("paid: %+v, %v; want completed with 201", rec, err)
	}
	// Text output says what happened and why.
	e.abandoned(t, "text", api.LeaseReconcile)
	e.lookups.Store("text", `{"outcome":"unknown","retry_after_ms":5000}`)
	inv := invoke(t, "", "keys", "reconcile", "text", "--addr", e.addr, "--token", adminToken, "--scope", "tenant-1")
	if inv.code != 0 || !strings.Contains(inv.stdout, "noop: the upstream answered unknown; the record stays indeterminate") {
		t.Errorf("text output: exit %d\n%s", inv.code, inv.stdout)
	}
}
