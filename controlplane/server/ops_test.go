package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
)

// answerBound is how long any answer may take while Redis is down: the
// operation timeout (1 s by default) plus slack. It bounds, it does not
// measure performance.
const answerBound = 2 * time.Second

// endpoints are one request of each kind that reaches the store.
func storeEndpoints(tok string) []struct {
	name, method, path string
	body               any
} {
	return []struct {
		name, method, path string
		body               any
	}{
		{"reserve", http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp"}},
		{"complete", http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: tok, Response: api.StoredResponse{Status: 200}}},
		{"release", http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "k", Token: tok}},
		{"admin get", http.MethodGet, api.PathAdminKeys + query("s", "k"), nil},
		{"admin delete", http.MethodDelete, api.PathAdminKeys + query("s", "k"), nil},
		{"admin delete dry run", http.MethodDelete, api.PathAdminKeys + query("s", "k", "dry_run=1"), nil},
		{"admin release", http.MethodPost, api.PathAdminRelease + query("s", "k"), nil},
	}
}

// expect503Soon sends a request that must be answered 503 (problem+json,
// Retry-After) before answerBound.
func expect503Soon(t *testing.T, e *env, method, path string, body any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), answerBound)
	defer cancel()
	resp, b := e.doContext(ctx, method, path, body) // fails the test on a deadline
	problemOf(t, resp, b, http.StatusServiceUnavailable)
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
}

func TestRedisDownThenBack(t *testing.T) {
	e := newEnv(t)
	tok := e.acquire("s", "k", "fp")
	e.redis.Stop()

	for _, ep := range storeEndpoints(tok) {
		t.Run(ep.name, func(t *testing.T) { expect503Soon(t, e, ep.method, ep.path, ep.body) })
	}
	expect503Soon(t, e, http.MethodGet, api.PathReadyz, nil)
	if resp, b := e.do(http.MethodGet, api.PathHealthz, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz while Redis is down = %d %s, want 200: the process is up", resp.StatusCode, b)
	}
	if !strings.Contains(e.logs.String(), `"outcome":"error"`) {
		t.Error("no error was logged while Redis was down")
	}

	e.redis.Restart()
	ready := eventually(t, 5*time.Second, func() bool {
		resp, _ := e.do(http.MethodGet, api.PathReadyz, nil)
		return resp.StatusCode == http.StatusOK
	})
	if !ready {
		t.Fatal("readyz did not recover within 5s of Redis restarting")
	}
	// The data went with the restart (no persistence): the key is free.
	e.acquire("s", "k", "fp")
}

// A Redis that accepts connections but never answers (a hung server, a
// black-holed network) must not hang the API either.
func TestRedisSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	client, err := store.NewClient("redis://"+ln.Addr().String(), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	// Default timeouts and client options: what a deployment gets.
	srv, err := server.New(store.New(client, store.Options{}), server.Options{
		Token:  token,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	for _, ep := range storeEndpoints("1.abc") {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			expect503Soon(t, &env{t: t, ts: ts, token: token}, ep.method, ep.path, ep.body)
		})
	}
	t.Run("readyz", func(t *testing.T) {
		t.Parallel()
		expect503Soon(t, &env{t: t, ts: ts, token: token}, http.MethodGet, api.PathReadyz, nil)
	})
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t)
	e.token = ""
	for _, tt := range []struct{ path, want string }{
		{api.PathHealthz, `{"status":"ok"}`},
		{api.PathReadyz, `{"status":"ready"}`},
	} {
		resp, body := e.do(http.MethodGet, tt.path, nil)
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != tt.want {
			t.Errorf("GET %s = %d %s, want 200 %s", tt.path, resp.StatusCode, body, tt.want)
		}
		resp, body = e.do(http.MethodHead, tt.path, nil)
		if resp.StatusCode != 200 || len(body) != 0 {
			t.Errorf("HEAD %s = %d %q, want 200 and no body", tt.path, resp.StatusCode, body)
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	tok := e.acquire("s", "k", "fp")
	e.reserve("s", "k", "fp")    // in_progress
	e.reserve("s", "k", "other") // mismatch
	e.completeWith("s", "k", tok, api.StoredResponse{Status: 200})
	e.reserve("s", "k", "fp")                                                                                                                               // completed
	e.do(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: "1.not-the-token", Response: api.StoredResponse{Status: 200}}) // stale
	e.do(http.MethodPost, api.PathReserve, `{"scope":""}`)                                                                                                  // invalid
	e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp"}, "Authorization", "Bearer bad-bad-bad-bad")
	e.do(http.MethodDelete, api.PathAdminKeys+query("s", "absent"), nil) // noop
	e.redis.Stop()
	e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k2", Fingerprint: "fp"}) // error

	resp, body := e.do(http.MethodGet, api.PathMetrics, nil, "Authorization", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`idemgate_operations_total{op="reserve",outcome="acquired"} 1`,
		`idemgate_operations_total{op="reserve",outcome="in_progress"} 1`,
		`idemgate_operations_total{op="reserve",outcome="mismatch"} 1`,
		`idemgate_operations_total{op="reserve",outcome="completed"} 1`,
		`idemgate_operations_total{op="reserve",outcome="invalid"} 1`,
		`idemgate_operations_total{op="reserve",outcome="error"} 1`,
		`idemgate_operations_total{op="complete",outcome="completed"} 1`,
		`idemgate_operations_total{op="complete",outcome="stale"} 1`,
		`idemgate_operations_total{op="admin_delete",outcome="noop"} 1`,
		`idemgate_operations_total{op="release",outcome="released"} 0`, // known series exist from the start
		`idemgate_operation_duration_seconds_count{op="reserve"} 6`,
		`idemgate_operation_duration_seconds_bucket{op="complete",le="0.001"}`,
		`idemgate_redis_errors_total{op="reserve"} 1`,
		`idemgate_http_requests_total{code="200",route="reserve"} 4`,
		`idemgate_http_requests_total{code="401",route="reserve"} 1`,
		`idemgate_http_requests_total{code="503",route="reserve"} 1`,
		`idemgate_http_requests_total{code="409",route="complete"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grep(text, "idemgate_"))
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestEncryptionAtRest(t *testing.T) {
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	const capBytes = 1000
	e := newEnv(t, func(s *setup) {
		s.opt.Sealer = sealer
		// As main does: the store's cap grows by the seal overhead so the
		// cap keeps counting plaintext bytes.
		s.storeOpt.MaxStoredResponse = capBytes + seal.Overhead
	})
	plaintext := []byte(`{"card":"4242 4242 4242 4242","holder":"Ada Lovelace"}`)
	tok := e.acquire("s", "k", "fp")
	e.completeWith("s", "k", tok, api.StoredResponse{Status: 201, Body: plaintext})

	// What Redis holds: no plaintext, one sealed body.
	ctx := context.Background()
	raw, err := e.redis.Client().HGetAll(ctx, e.store.RecordKey("s", "k")).Result()
	if err != nil || len(raw) == 0 {
		t.Fatalf("HGETALL %s = %v, %v; want the record's fields", e.store.RecordKey("s", "k"), raw, err)
	}
	sealedField := ""
	for f, v := range raw {
		for _, secret := range []string{"4242", "Lovelace", base64.StdEncoding.EncodeToString(plaintext)[:16]} {
			if strings.Contains(v, secret) {
				t.Errorf("Redis field %q holds the plaintext (%q)", f, secret)
			}
		}
		if len(v) == len(plaintext)+seal.Overhead && v[0] == seal.Version {
			sealedField = f
		}
	}
	if sealedField == "" {
		t.Fatalf("no field of %v is a sealed body of %d bytes", raw, len(plaintext)+seal.Overhead)
	}

	// The API gives the plaintext back.
	res := e.reserve("s", "k", "fp")
	if res.Outcome != api.Completed || !bytes.Equal(res.Response.Body, plaintext) {
		t.Errorf("replay = %+v, want the plaintext body", res.Response)
	}
	var rec api.Record
	e.call(http.MethodGet, api.PathAdminKeys+query("s", "k", "body=1"), nil, http.StatusOK, &rec)
	if rec.Response == nil || !bytes.Equal(rec.Response.Body, plaintext) {
		t.Errorf("admin get body=1 = %+v, want the plaintext body", rec.Response)
	}

	// An empty body stays empty.
	tok = e.acquire("s", "empty", "fp")
	e.completeWith("s", "empty", tok, api.StoredResponse{Status: 204})
	if res := e.reserve("s", "empty", "fp"); res.Response == nil || res.Response.Status != 204 || len(res.Response.Body) != 0 {
		t.Errorf("replay of an empty body = %+v", res.Response)
	}

	// The cap counts plaintext bytes: 3 (status) + body.
	for _, tt := range []struct {
		key     string
		size    int
		omitted bool
	}{{"at-cap", capBytes - 3, false}, {"over-cap", capBytes - 2, true}} {
		tok := e.acquire("s", tt.key, "fp")
		e.completeWith("s", tt.key, tok, api.StoredResponse{Status: 200, Body: bytes.Repeat([]byte("p"), tt.size)})
		res := e.reserve("s", tt.key, "fp")
		if res.Response.BodyOmitted != tt.omitted || (!tt.omitted && len(res.Response.Body) != tt.size) {
			t.Errorf("%s: %d-byte body: body_omitted %v, %d bytes back; want omitted %v",
				tt.key, tt.size, res.Response.BodyOmitted, len(res.Response.Body), tt.omitted)
		}
	}

	// A sealed body moved onto another record does not open there.
	tok = e.acquire("s", "victim", "fp")
	e.completeWith("s", "victim", tok, api.StoredResponse{Status: 200, Body: []byte("victim's own body")})
	if err := e.redis.Client().HSet(ctx, e.store.RecordKey("s", "victim"), sealedField, raw[sealedField]).Err(); err != nil {
		t.Fatal(err)
	}
	// Reserve: still completed (the operation ran), without the body.
	if res := e.reserve("s", "victim", "fp"); res.Outcome != api.Completed || res.Response == nil ||
		!reflect.DeepEqual(*res.Response, api.StoredResponse{Status: 200, BodyOmitted: true}) {
		t.Errorf("reserve of a record with a moved sealed body = %+v, want completed, status 200, body omitted", res)
	}
	resp, body := e.do(http.MethodGet, api.PathAdminKeys+query("s", "victim", "body=1"), nil)
	problemOf(t, resp, body, http.StatusInternalServerError)

	// Another key (rotated without keeping the old one): never garbage.
	other, err := seal.New(bytes.Repeat([]byte{8}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	o := newEnv(t, func(s *setup) { s.redis = e.redis; s.opt.Sealer = other })
	if res := o.reserve("s", "k", "fp"); res.Outcome != api.Completed || res.Response == nil || !res.Response.BodyOmitted || len(res.Response.Body) != 0 {
		t.Errorf("reserve after rotation without the previous key = %+v, want completed, body omitted", res)
	}
	resp, body = o.do(http.MethodGet, api.PathAdminKeys+query("s", "k", "body=1"), nil)
	if p := problemOf(t, resp, body, http.StatusInternalServerError); p.Type != "urn:idemgate:problem:undecryptable" {
		t.Errorf("problem = %+v", p)
	}
	o.call(http.MethodGet, api.PathAdminKeys+query("s", "k"), nil, http.StatusOK, nil) // no body, nothing to open
	if !strings.Contains(o.logs.String(), "cannot be decrypted") {
		t.Errorf("no log line says the body cannot be decrypted:\n%s", o.logs.String())
	}
	// With the old key kept as the previous one, it opens again.
	rotated, err := seal.New(bytes.Repeat([]byte{8}, seal.KeySize), bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	r := newEnv(t, func(s *setup) { s.redis = e.redis; s.opt.Sealer = rotated })
	if res := r.reserve("s", "k", "fp"); !bytes.Equal(res.Response.Body, plaintext) {
		t.Errorf("after rotation with the previous key kept, replay = %+v", res.Response)
	}
}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	body := []byte("SECRET-BODY-d41d8cd98f00")
	tok := e.acquire("tenant-hash", "key-1", "fp")
	var res api.Result
	resp, b := e.do(http.MethodPost, api.PathComplete,
		api.CompleteRequest{Scope: "tenant-hash", Key: "key-1", Token: tok, Response: api.StoredResponse{Status: 201, Body: body}},
		"X-Request-Id", "req-42")
	if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil {
		t.Fatalf("complete = %d %s", resp.StatusCode, b)
	}
	e.reserve("tenant-hash", "key-1", "fp") // replays the body
	e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f"}, "Authorization", "Bearer not-the-token-xyz")

	logs := e.logs.String()
	for _, want := range []string{`"request_id":"req-42"`, `"op":"complete"`, `"outcome":"completed"`, `"scope":"tenant-hash"`, `"key":"key-1"`, `"status":401`, `"duration":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	for _, secret := range []string{token, tok, "not-the-token-xyz", string(body), base64.StdEncoding.EncodeToString(body)} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret or a body: %q", secret)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("log line is not structured: %q", line)
		}
	}
}

// panicEnv serves the API on a store whose every operation panics.
func panicEnv(t *testing.T, logger *slog.Logger) *env {
	t.Helper()
	srv, err := server.New(panicStore{}, server.Options{Token: token, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &env{t: t, ts: ts, token: token}
}

func TestPanicIsA500Problem(t *testing.T) {
	e := panicEnv(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	resp, body := e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f"})
	problemOf(t, resp, body, http.StatusInternalServerError)
}

type panicStore struct{ server.Store }

func (panicStore) Reserve(context.Context, api.ReserveRequest) (api.ReserveResponse, error) {
	panic("boom")
}

// logLines returns the structured log lines whose fields include all of
// want (string values).
func logLines(t *testing.T, logs string, want map[string]string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		match := true
		for k, v := range want {
			if s, _ := m[k].(string); s != v {
				match = false
			}
		}
		if match {
			out = append(out, m)
		}
	}
	return out
}

func metricsText(t *testing.T, e *env) string {
	t.Helper()
	resp, body := e.do(http.MethodGet, api.PathMetrics, nil, "Authorization", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	return string(body)
}

// TestUnreadableStoredResponseOnReserve: a completed record whose stored
// response cannot be read (its body sealed with a key since dropped, or its
// headers corrupt) is answered 200 completed with the status and
// body_omitted on reserve, never an error: a filter failing open on an
// error would execute a completed operation again. It is logged at ERROR
// and counted. The admin GET with body=1 still answers 500.
func TestUnreadableStoredResponseOnReserve(t *testing.T) {
	oldKey, err := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := seal.New(bytes.Repeat([]byte{2}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	before := newEnv(t, func(s *setup) { s.opt.Sealer = oldKey })
	for _, k := range []string{"sealed", "corrupt"} {
		tok := before.acquire("s", k, "fp")
		before.completeWith("s", k, tok, api.StoredResponse{Status: 201,
			Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"id":"pay_1"}`)})
	}
	if err := before.redis.Client().HSet(context.Background(), before.store.RecordKey("s", "corrupt"), "hdr", "[not json").Err(); err != nil {
		t.Fatal(err)
	}

	// Rotated without keeping the previous key.
	e := newEnv(t, func(s *setup) { s.redis = before.redis; s.opt.Sealer = newKey })
	want := api.StoredResponse{Status: 201, BodyOmitted: true}
	for _, tt := range []struct{ key, reason, logged string }{
		{"sealed", "undecryptable", "cannot be decrypted"},
		{"corrupt", "corrupt", "not valid JSON"},
	} {
		t.Run(tt.key, func(t *testing.T) {
			var res api.ReserveResponse
			e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: tt.key, Fingerprint: "fp"}, http.StatusOK, &res)
			if res.Outcome != api.Completed || res.Response == nil || !reflect.DeepEqual(*res.Response, want) {
				t.Errorf("reserve = %+v (response %+v), want completed with %+v", res, res.Response, want)
			}
			lines := logLines(t, e.logs.String(), map[string]string{"op": "reserve", "key": tt.key, "level": "ERROR"})
			if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["error"]), tt.logged) {
				t.Errorf("ERROR log lines for reserve of %s: %v, want one whose error says %q", tt.key, lines, tt.logged)
			}
			if m := metricsText(t, e); !strings.Contains(m, `idemgate_stored_response_unreadable_total{op="reserve",reason="`+tt.reason+`"} 1`) {
				t.Errorf("/metrics does not count it:\n%s", grep(m, "unreadable"))
			}
			resp, body := e.do(http.MethodGet, api.PathAdminKeys+query("s", tt.key, "body=1"), nil)
			problemOf(t, resp, body, http.StatusInternalServerError)
		})
	}
}
