package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
	"github.com/idemgate/idemgate/internal/syncbuf"
)

const (
	token      = "filter-token-0123456789abcdef"
	adminToken = "admin-token-0123456789abcdef"
)

// env is one API server over a real store on a private redis-server.
type env struct {
	t      *testing.T
	redis  *redistest.Server
	client redis.UniversalClient
	store  *store.Store
	srv    *server.Server
	ts     *httptest.Server
	logs   *syncbuf.Buffer
	token  string // sent by do; "" sends no Authorization header
}

type setup struct {
	opt      server.Options
	storeOpt store.Options
	redis    *redistest.Server // share one; nil starts one
	// wrap, when set, stands between the server and the store (to make
	// one store call fail).
	wrap func(server.Store) server.Store
	// reconcile, when set, are the lookup targets of a reconciler over
	// the store (Options.Reconciler), its metrics on the server's registry.
	reconcile []reconcile.Target
}

func newEnv(t *testing.T, mods ...func(*setup)) *env {
	t.Helper()
	s := setup{opt: server.Options{Token: token}}
	for _, m := range mods {
		m(&s)
	}
	rs := s.redis
	if rs == nil {
		rs = redistest.Start(t)
	}
	client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	st := store.New(client, s.storeOpt)
	logs := &syncbuf.Buffer{}
	s.opt.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var api server.Store = st
	if s.wrap != nil {
		api = s.wrap(st)
	}
	if s.reconcile != nil {
		if s.opt.Registry == nil {
			s.opt.Registry = server.NewRegistry()
		}
		names := make([]string, len(s.reconcile))
		for i, tg := range s.reconcile {
			names[i] = tg.Name
		}
		c := reconcile.NewClient(s.reconcile, nil, 10*time.Second, reconcile.MaxAnswerBytes(1<<20))
		s.opt.Reconciler = reconcile.New(st, c, reconcile.Options{Logger: s.opt.Logger, Metrics: reconcile.NewMetrics(s.opt.Registry, names)})
	}
	srv, err := server.New(api, s.opt)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	tok := s.opt.Token
	return &env{t: t, redis: rs, client: client, store: st, srv: srv, ts: ts, logs: logs, token: tok}
}

// do sends a request; body is JSON-encoded unless it is a string or []byte.
func (e *env) do(method, path string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.doContext(context.Background(), method, path, body, hdr...)
}

func (e *env) doContext(ctx context.Context, method, path string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.ts.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// call sends a request, checks the status and decodes a JSON answer into out.
func (e *env) call(method, path string, body any, wantStatus int, out any) *http.Response {
	e.t.Helper()
	resp, b := e.do(method, path, body)
	if resp.StatusCode != wantStatus {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
		}
	}
	return resp
}

func (e *env) reserve(scope, key, fp string) api.ReserveResponse {
	e.t.Helper()
	var res api.ReserveResponse
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: scope, Key: key, Fingerprint: fp}, http.StatusOK, &res)
	return res
}

func (e *env) acquire(scope, key, fp string) string {
	e.t.Helper()
	res := e.reserve(scope, key, fp)
	if res.Outcome != api.Acquired || res.Token == "" {
		e.t.Fatalf("reserve %s/%s = %+v, want acquired with a token", scope, key, res)
	}
	return res.Token
}

func (e *env) completeWith(scope, key, tok string, resp api.StoredResponse) {
	e.t.Helper()
	var res api.Result
	e.call(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: scope, Key: key, Token: tok, Response: resp}, http.StatusOK, &res)
	if res.Outcome != "completed" {
		e.t.Fatalf("complete = %+v, want completed", res)
	}
}

// problemOf checks that an answer is application/problem+json with the
// HTTP status in its body, and returns it.
func problemOf(t *testing.T, resp *http.Response, body []byte, wantStatus int) api.Problem {
	t.Helper()
	if resp.StatusCode != wantStatus {
		t.Fatalf("status = %d %s, want %d", resp.StatusCode, body, wantStatus)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p api.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	if p.Status != wantStatus || p.Title == "" || !strings.HasPrefix(p.Type, "urn:idemgate:problem:") {
		t.Errorf("problem = %+v; want status %d, a title and an idemgate type", p, wantStatus)
	}
	return p
}

func query(scope, key string, extra ...string) string {
	q := "?scope=" + url.QueryEscape(scope) + "&key=" + url.QueryEscape(key)
	for _, x := range extra {
		q += "&" + x
	}
	return q
}

// eventually polls f until it returns true or d passes.
func eventually(t *testing.T, d time.Duration, f func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f()
}

// storedFP is what the store keeps of a fingerprint without a fingerprint
// key: "s1:" + hex(SHA-256).
func storedFP(fp string) string {
	sum := sha256.Sum256([]byte(fp))
	return "s1:" + hex.EncodeToString(sum[:])
}
