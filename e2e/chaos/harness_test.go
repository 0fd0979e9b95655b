package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
	"github.com/idemgate/idemgate/e2e/upstream"
	"github.com/redis/go-redis/v9"
)

// Hosts that select the chaos policy's routes (../testdata/chaos.json).
const (
	hostDefault  = "api.chaos.test"      // the demo route: lease 30s, edge cache on, fail-closed
	hostLock     = "lock.chaos.test"     // lease 2s, no edge cache, on_indeterminate lock
	hostScoped   = "scoped.chaos.test"   // scope: the x-user header
	hostWaitOpen = "waitopen.chaos.test" // on_in_progress wait, failure_mode open
	hostStorm    = "storm.chaos.test"    // lease 3s, fail-closed, on_indeterminate lock
)

// requestTimeout bounds a request that should be answered; a guard
// against hangs, not a latency check.
const requestTimeout = 60 * time.Second

// edgeBound is how long an operator's delete may take to reach every edge
// cache: api.EdgeEpochPoll (1 s) plus the policy's control-plane timeout
// (2 s here), as controlplane/api documents, plus a second for a loaded
// machine's ticks.
const edgeBound = 4 * time.Second

func random(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// payment is one POST /payments.
type payment struct {
	gateway string // base URL; default the stack's gateway
	host    string // default hostDefault
	key     string
	auth    string // Authorization; none when empty
	body    string
	headers map[string]string
	// timeout: the client gives up after it (default requestTimeout).
	timeout time.Duration
	// leave: the client gives up when it closes.
	leave <-chan struct{}
}

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error or the client's own timeout: no answer
}

func (a answer) replayed() bool { return a.header.Get("Idempotent-Replayed") == "true" }

// id is the payment id in the answer's body ("" when none).
func (a answer) id() string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(a.body, &v)
	return v.ID
}

// problemType is the type of a problem+json answer ("" when not one).
func (a answer) problemType() string {
	if !strings.HasPrefix(a.header.Get("Content-Type"), "application/problem+json") {
		return ""
	}
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(a.body, &p)
	return p.Type
}

// indeterminate says a is the indeterminate problem: 409 of its own type.
func (a answer) indeterminate() bool {
	return a.err == nil && a.status == http.StatusConflict && strings.Contains(a.problemType(), "indeterminate")
}

func (a answer) String() string {
	if a.err != nil {
		return "no answer (" + a.err.Error() + ")"
	}
	body := strings.TrimSpace(string(a.body))
	if len(body) > 300 {
		body = body[:300] + fmt.Sprintf("…(%d bytes)", len(a.body))
	}
	s := fmt.Sprintf("%d %s", a.status, body)
	if a.replayed() {
		s += " [replayed]"
	}
	if ra := a.header.Get("Retry-After"); ra != "" {
		s += " [Retry-After: " + ra + "]"
	}
	return s
}

// client never reuses a connection: net/http would silently re-send a
// request carrying Idempotency-Key on a reused connection that failed,
// and the tests count executions.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

func send(t testing.TB, p payment) answer {
	t.Helper()
	timeout := p.timeout
	if timeout == 0 {
		timeout = requestTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if p.leave != nil {
		go func() {
			select {
			case <-p.leave:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	gw := p.gateway
	if gw == "" {
		gw = stk.gateway
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw+"/payments", strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = p.host
	if req.Host == "" {
		req.Host = hostDefault
	}
	req.Header.Set("Content-Type", "application/json")
	if p.auth != "" {
		req.Header.Set("Authorization", p.auth)
	}
	req.Header.Set("Idempotency-Key", p.key)
	for k, v := range p.headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// mustSend sends p and fails the test when no answer comes back.
func mustSend(t testing.TB, p payment) answer {
	t.Helper()
	a := send(t, p)
	if a.err != nil {
		t.Fatalf("POST /payments (host %q, key %q): %v", p.host, p.key, a.err)
	}
	return a
}

// executions reads the demo upstream's counter.
func executions(t testing.TB) int64 {
	t.Helper()
	resp, err := client.Get(stk.upstream + "/__executions")
	if err != nil {
		t.Fatalf("GET /__executions: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Count *int64 `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Count == nil {
		t.Fatalf("GET /__executions: %s: bad answer (%v)", resp.Status, err)
	}
	return *v.Count
}

// waitExecuted waits until the upstream has executed more than before:
// the request under test holds its key and runs. Bounded.
func waitExecuted(t testing.TB, before int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); executions(t) <= before; {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the upstream within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restartControlPlaneAfter makes sure the control plane runs again when
// the test ends, and that the stack's gateway governs again.
func restartControlPlaneAfter(t *testing.T) {
	t.Cleanup(func() { startControlPlane(t) })
}

// controlPlaneDown says killControlPlane ended it and nothing started it
// since; the tests run one after another, so no lock.
var controlPlaneDown bool

// startControlPlane starts the control plane if a test killed it, then
// waits until the stack's gateway governs requests again.
func startControlPlane(t testing.TB) {
	t.Helper()
	if controlPlaneDown {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := stk.st.StartControlPlane(ctx); err != nil {
			t.Fatalf("starting the control plane: %v", err)
		}
		controlPlaneDown = false
	}
	waitGoverned(t, stk.gateway)
}

// waitGoverned waits until a fresh key on the fail-closed default route
// is forwarded through gw (not 503): the gateway reaches a working control
// plane. The probe asks the upstream to answer without executing, so that
// probes never move the execution counter the tests compare. Bounded.
func waitGoverned(t testing.TB, gw string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last answer
	for time.Now().Before(deadline) {
		last = send(t, payment{gateway: gw, key: random(t, "probe-"), auth: "Bearer probe", body: `{"amount":1}`,
			headers: map[string]string{upstream.HeaderStatus: "200"}})
		if last.err == nil && last.status == http.StatusOK && last.problemType() == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gateway %s did not govern requests within 60s; last answer: %v", gw, last)
}

func killControlPlane(t testing.TB) {
	t.Helper()
	if err := stk.st.KillControlPlane(context.Background()); err != nil {
		t.Fatal(err)
	}
	controlPlaneDown = true
}

// gatewayProc is a gateway the harness runs besides the stack's: the
// local host with the chaos policy, sharing the stack's control plane
// unless told otherwise.
type gatewayProc struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
}

type gatewayOpts struct {
	policy       string // the plugin configuration file; default the chaos policy
	upstream     string // host:port; default the demo upstream
	controlPlane string // host:port; default the stack's control plane
	extra        []string
}

// startGateway starts build/idemgate-host as gateway name; it stops when
// the test ends.
func startGateway(t *testing.T, name string, o gatewayOpts) *gatewayProc {
	t.Helper()
	g := launchGateway(t, name, o)
	t.Cleanup(g.stop)
	return g
}

// The shared second gateway: the chaos policy, the demo upstream, the
// stack's control plane and a 64 KiB buffer limit (case 11; the other
// users send small bodies). Started by the first test that needs it,
// stopped when the package's tests end: a gateway takes seconds to start
// (it compiles the module) on a loaded machine.
var (
	gatewayBMu   sync.Mutex
	gatewayB     *gatewayProc
	gatewayBStop []func()
)

// bufferLimitB is gateway B's -buffer-limit.
const bufferLimitB = 64 << 10

func sharedGatewayB(t *testing.T) *gatewayProc {
	t.Helper()
	gatewayBMu.Lock()
	defer gatewayBMu.Unlock()
	if gatewayB == nil {
		gatewayB = launchGateway(t, "gateway-b", gatewayOpts{extra: []string{"-buffer-limit", strconv.Itoa(bufferLimitB)}})
		gatewayBStop = append(gatewayBStop, gatewayB.stop)
	}
	waitGoverned(t, gatewayB.url)
	return gatewayB
}

// stopSharedGateways stops gateway B, if it ran.
func stopSharedGateways() {
	gatewayBMu.Lock()
	defer gatewayBMu.Unlock()
	for _, f := range gatewayBStop {
		f()
	}
}

func (g *gatewayProc) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

func launchGateway(t *testing.T, name string, o gatewayOpts) *gatewayProc {
	t.Helper()
	if o.upstream == "" {
		o.upstream = stk.upstreamAddr
	}
	if o.controlPlane == "" {
		o.controlPlane = stk.controlPlane
	}
	if o.policy == "" {
		o.policy = stk.policy
	}
	addr, err := stack.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(stk.logDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"-listen", addr,
		"-wasm", filepath.Join(stk.bin, "idempotency.wasm"),
		"-config", o.policy,
		"-cluster", cluster + "=" + o.controlPlane,
		"-upstream", o.upstream,
	}, o.extra...)
	cmd := exec.Command(filepath.Join(stk.bin, stack.BinHost), args...)
	cmd.Dir = stk.logDir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("gateway %s: %v (run make build)", name, err)
	}
	g := &gatewayProc{url: "http://" + addr, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(g.done)
	}()
	// 90 s: a guard against hangs; on a loaded machine the module's
	// compilation alone took 30 s.
	for deadline := time.Now().Add(90 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-g.done:
			t.Fatalf("gateway %s exited at start; end of %s:\n%s", name, logPath, tail(logPath, 2048))
		default:
		}
		if time.Now().After(deadline) {
			g.stop()
			t.Fatalf("gateway %s not listening on %s within 90s; end of %s:\n%s", name, addr, logPath, tail(logPath, 2048))
		}
		time.Sleep(25 * time.Millisecond)
	}
	return g
}

// serve serves h on a free loopback port until the test ends; it returns
// the address.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// envoyResetBody is what Envoy answers, with 503, when the upstream resets
// the stream before response headers: the reply of a sidecar or an L7
// proxy between the gateway and the app.
const envoyResetBody = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"

// resetProxy is an L7 proxy between the gateway and the app that answers
// as Envoy does on a reset: the app may have executed, and the gateway
// sees an ordinary (via_upstream) 503.
func resetProxy(t *testing.T, target string) string {
	t.Helper()
	return serve(t, resetProxyHandler(target))
}

// resetProxyHandler is resetProxy's handler.
func resetProxyHandler(target string) http.Handler {
	u := &url.URL{Scheme: "http", Host: target}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = r.In.Host },
		// A fresh connection per request, and request bodies without
		// GetBody: the proxy never re-sends (net/http would, for a
		// request carrying Idempotency-Key, on a reused connection).
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Server", "envoy")
			w.Header().Set("Content-Length", fmt.Sprint(len(envoyResetBody)))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, envoyResetBody)
		},
	}
	return rp
}

// slowControlPlane is a proxy in front of the control plane that, while
// slow is set, passes a reserve through at once (so it takes effect in
// Redis) and holds its answer back for that long: the control plane
// answers after the client has left.
type slowControlPlane struct {
	addr      string
	slow      atomic.Int64 // nanoseconds; 0: no delay
	delivered atomic.Int64 // delayed reserve answers written back
}

func startSlowControlPlane(t *testing.T) *slowControlPlane {
	t.Helper()
	s := &slowControlPlane{}
	u := &url.URL{Scheme: "http", Host: stk.controlPlane}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = r.In.Host },
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	s.addr = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := time.Duration(s.slow.Load())
		if d == 0 || r.URL.Path != "/v1/reserve" {
			rp.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: http.Header{}}
		rp.ServeHTTP(rec, r)
		time.Sleep(d)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
		s.delivered.Add(1)
	}))
	return s
}

// recorder keeps an answer to write it back later.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

// recordOf finds the scope and key under which the control plane holds a
// record whose key contains keyPart, by scanning the stack's Redis (the
// scope is a hash of the principal the test cannot compute without the
// filter's framing). It reads the record names only.
func recordOf(t testing.TB, keyPart string) (scope, key string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: stk.st.RedisAddr()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A set: the control plane may keep more than one Redis key per
	// record (a fence, say) under the same hash tag.
	seen := map[[2]string]bool{}
	var found [][2]string
	iter := rdb.Scan(ctx, 0, "*{*}*", 1000).Iterator()
	for i := 0; iter.Next(ctx) && i < 1_000_000; i++ {
		name := iter.Val()
		open := strings.IndexByte(name, '{')
		end := strings.IndexByte(name[open+1:], '}') + open + 1
		if open < 0 || end <= open {
			continue
		}
		s64, k64, ok := strings.Cut(name[open+1:end], ".")
		if !ok {
			continue
		}
		s, err1 := base64.RawURLEncoding.DecodeString(s64)
		k, err2 := base64.RawURLEncoding.DecodeString(k64)
		if r := [2]string{string(s), string(k)}; err1 == nil && err2 == nil && strings.Contains(r[1], keyPart) && !seen[r] {
			seen[r] = true
			found = append(found, r)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scanning redis: %v", err)
	}
	if len(found) != 1 {
		t.Fatalf("records whose key holds %q: %q, want exactly one", keyPart, found)
	}
	return found[0][0], found[0][1]
}

// idemctl runs build/idemctl as an operator would; it fails the test on
// a non-zero exit.
func idemctl(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(stk.bin, "idemctl"), args...)
	cmd.Env = append(os.Environ(), "IDEM_CONTROLPLANE_ADDR="+stk.controlPlane, "IDEM_ADMIN_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("idemctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Fatalf("idemctl %s: %v (run make build)", strings.Join(args, " "), err)
	}
	return string(out)
}

// Control headers of the demo upstream, as the tests send them.
var (
	hdrDrop      = map[string]string{upstream.HeaderDrop: "1"}
	hdrFailAfter = func(status int) map[string]string {
		return map[string]string{upstream.HeaderFailAfter: fmt.Sprint(status)}
	}
	hdrDelay = func(ms int) map[string]string {
		return map[string]string{upstream.HeaderDelay: fmt.Sprint(ms)}
	}
)
