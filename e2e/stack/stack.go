// Package stack starts and stops idemgate's local stack — Redis, the
// control plane, the demo upstream and a gateway running
// build/idempotency.wasm — as child processes, each logging to its own file,
// and performs the faults the end-to-end suite needs (kill, start and
// restart the control plane; restart Redis). For the demo
// (Config.Supervise) it restarts a component that dies, see supervise.go.
//
// Redis: a URL given in Config.RedisURL (any the control plane takes, such
// as redis-sentinel://…) or an address in Config.RedisAddr is used as it is
// (and cannot be restarted by the stack); otherwise a private redis-server is started
// on a free loopback port (never 6379's) with append-only persistence in
// the log directory, so that "Redis restarted" means what it means in
// production with `appendonly yes`: records survive, connections and loaded
// scripts do not. Without redis-server, an embedded dev-only store (see
// embedded.go) is served from this process on a free loopback port, and
// the stack says so loudly.
//
// Gateway: real Envoy when `envoy` is on PATH (a bootstrap rendered from
// envoy.yaml.tmpl), else the local proxy-wasm host `idemgate-host`.
package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/idemgate/idemgate/e2e/host"
	"github.com/idemgate/idemgate/e2e/upstream"
)

// Binaries the stack runs from Config.BinDir (`make build` puts them there).
const (
	BinControlPlane = "controlplane"
	BinUpstream     = "demo-upstream"
	BinHost         = "idemgate-host"
)

// Gateway kinds.
const (
	GatewayAuto  = ""      // Envoy when on PATH, else the local host
	GatewayEnvoy = "envoy" // real Envoy
	GatewayHost  = "host"  // the local proxy-wasm host
)

// Roles name the addresses, for errors such as AddrInUseError.
const (
	RoleGateway      = "gateway"
	RoleControlPlane = "controlplane"
	RoleUpstream     = "upstream"
	RoleRedis        = "redis"
)

// readyTimeout bounds each component's start; they start in well under a
// second, so this only guards against hangs. Wide: on a loaded 2-core
// machine a gateway compiling the module for each VM took 30 s.
const readyTimeout = 90 * time.Second

// Config says what to run where.
type Config struct {
	BinDir string // holds controlplane, demo-upstream, idemgate-host
	LogDir string // one <component>.log each, plus Redis's data and Envoy's bootstrap
	Wasm   string // the filter module, build/idempotency.wasm
	Policy string // the plugin configuration (JSON), passed to the gateway verbatim
	// Routes, when set, is a route table (JSON, e2e/host.Route's shape:
	// name, path prefix, filter_metadata): the local host's -routes, and
	// the routes of Envoy's bootstrap. Empty: one unnamed route for "/".
	Routes string

	GatewayAddr      string
	ControlPlaneAddr string
	UpstreamAddr     string
	RedisAddr        string // empty: start a private Redis
	// RedisURL is passed to the control plane's --redis-url as it is
	// (redis-sentinel://…, redis-cluster://…); it wins over RedisAddr. The
	// stack neither checks nor restarts that Redis: the control plane's
	// /readyz says whether it answers.
	RedisURL string
	// ControlPlaneArgs are extra control-plane flags, after the stack's
	// own (a repeated flag wins: the flag package keeps the last), e.g.
	// "--durable-replicas", "2" or "--redis-prefix", "side-a".
	ControlPlaneArgs []string
	// NoReconcile starts the control plane without the demo upstream as
	// its reconcile target. By default it gets
	// --reconcile-url http://<UpstreamAddr>/__idempotency/{attempt} (the
	// demo upstream implements the lookup) and a fresh bearer credential
	// shared with the upstream, so that routes with on_indeterminate:
	// reconcile work; routes without it are unaffected.
	NoReconcile bool
	// EmbeddedRedis uses the embedded dev-only store even when
	// redis-server is installed (for its tests); ignored with RedisAddr.
	EmbeddedRedis bool

	Gateway string // GatewayAuto, GatewayEnvoy or GatewayHost
	// GatewayAdminAddr, when set, is the local host's admin address
	// (GET /stats, /memory: each VM's linear memory). Host only.
	GatewayAdminAddr string
	// GatewayWorkers is the local host's VM count (-workers); 0 keeps its
	// default (2). Host only.
	GatewayWorkers int
	// GatewayArgs are extra local-host flags, after the stack's own (e.g.
	// "-route-timeout", "60s"). Host only.
	GatewayArgs []string
	// CalloutAddr, when set, is where the gateways send their control-plane
	// callouts instead of ControlPlaneAddr (a test puts a counting proxy
	// there). Host only.
	CalloutAddr string
	// ExtraGateways are further local hosts on the same control plane and
	// upstream (a fleet of gateways), started after the first and named
	// "gateway-2", "gateway-3"…. Host only.
	ExtraGateways []GatewayAddrs
	LogLevel      string // of the gateway and control plane; default info
	Log           *slog.Logger

	// Supervise restarts a component (gateway, control plane, upstream,
	// private redis-server) that exits without being asked to, on the
	// same address, while the others keep running; Notify hears of each
	// death and return. A component that dies more than MaxRestarts times
	// within RestartWindow is left down and reported on Failed. Without
	// Supervise every unasked exit is reported on Failed (the suite wants
	// to know, and performs its faults itself).
	Supervise      bool
	RestartBackoff time.Duration // the first restart's delay, doubled for each further one in the window (up to 5 s or itself); default 200 ms
	MaxRestarts    int           // default 5
	RestartWindow  time.Duration // default 1 min
	Notify         func(Event)   // called from the supervisor's goroutines; may be nil
}

// GatewayAddrs are one extra gateway's listener and admin (empty: none)
// addresses.
type GatewayAddrs struct {
	Addr  string
	Admin string
}

// AddrInUseError says an address the stack was told to use is taken.
type AddrInUseError struct {
	Role string
	Addr string
	Err  error
}

func (e *AddrInUseError) Error() string {
	return fmt.Sprintf("%s address %s is not free: %v", e.Role, e.Addr, e.Err)
}

func (e *AddrInUseError) Unwrap() error { return e.Err }

// MissingBinaryError says a binary the stack needs is not in BinDir.
type MissingBinaryError struct{ Path string }

func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("%s is missing: run `make build` first", e.Path)
}

// Stack is a running local stack.
type Stack struct {
	cfg     Config
	log     *slog.Logger
	gateway string // GatewayEnvoy or GatewayHost, as chosen
	redis   redisBackend

	controlplane, upstream, gw *proc
	extra                      []*proc // Config.ExtraGateways

	failed   chan error
	stopOnce sync.Once

	// Supervision: Stop sets stopping under supMu, so that no restart
	// starts a process after Stop has stopped it, and waits for supWG.
	supCtx    context.Context
	supCancel context.CancelFunc
	supMu     sync.Mutex
	stopping  bool
	supWG     sync.WaitGroup
}

// Start checks the configuration, starts every component in dependency
// order and returns once each is ready. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	// Children run in the log directory: relative paths would break.
	for _, p := range []*string{&cfg.BinDir, &cfg.LogDir, &cfg.Wasm, &cfg.Policy} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	if cfg.Routes != "" {
		abs, err := filepath.Abs(cfg.Routes)
		if err != nil {
			return nil, err
		}
		cfg.Routes = abs
	}
	s := newStack(cfg)
	pol, err := readPolicy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	if cfg.Routes != "" {
		if pol.routes, err = readRoutes(cfg.Routes); err != nil {
			return nil, err
		}
	}
	if s.gateway, err = chooseGateway(cfg.Gateway); err != nil {
		return nil, err
	}
	if err := s.preflight(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}

	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if s.redis, err = startRedis(ctx, s); err != nil {
		return nil, err
	}

	credential, err := reconcileCredential()
	if err != nil {
		return nil, err
	}
	s.controlplane = s.newProc(RoleControlPlane, filepath.Join(cfg.BinDir, BinControlPlane), controlPlaneArgs(s.cfg, s.redis.url(), pol), controlPlaneEnv(s.cfg, pol, credential))
	s.upstream = s.newProc(RoleUpstream, filepath.Join(cfg.BinDir, BinUpstream), []string{"-listen", cfg.UpstreamAddr}, upstreamEnv(s.cfg, credential))
	if s.gw, err = s.gatewayProc(pol); err != nil {
		return nil, err
	}
	if err := s.StartControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := s.launch(ctx, s.upstream, dialReady(cfg.UpstreamAddr)); err != nil {
		return nil, err
	}
	if err := s.launch(ctx, s.gw, dialReady(cfg.GatewayAddr)); err != nil {
		return nil, err
	}
	for i, g := range cfg.ExtraGateways {
		p := s.newProc(fmt.Sprintf("%s-%d", RoleGateway, i+2), filepath.Join(cfg.BinDir, BinHost), hostArgs(s.cfg, pol, g.Addr, g.Admin), nil)
		s.extra = append(s.extra, p)
		if err := s.launch(ctx, p, dialReady(g.Addr)); err != nil {
			return nil, err
		}
	}
	if cfg.Supervise {
		for _, p := range s.procs() {
			s.supervise(p)
		}
	}
	ok = true
	return s, nil
}

// newStack fills in the defaults; Start and the tests use it.
func newStack(cfg Config) *Stack {
	s := &Stack{cfg: cfg, log: cfg.Log, failed: make(chan error, 8)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.LogLevel == "" {
		s.cfg.LogLevel = "info"
	}
	if s.cfg.RestartBackoff <= 0 {
		s.cfg.RestartBackoff = DefaultRestartBackoff
	}
	if s.cfg.MaxRestarts <= 0 {
		s.cfg.MaxRestarts = DefaultMaxRestarts
	}
	if s.cfg.RestartWindow <= 0 {
		s.cfg.RestartWindow = DefaultRestartWindow
	}
	s.supCtx, s.supCancel = context.WithCancel(context.Background())
	return s
}

// procs are the stack's child processes by role.
func (s *Stack) procs() map[string]*proc {
	m := map[string]*proc{}
	for _, p := range append([]*proc{s.gw, s.controlplane, s.upstream}, s.extra...) {
		if p != nil {
			m[p.name] = p
		}
	}
	if r, ok := s.redis.(*redisServer); ok && r.p != nil {
		m[RoleRedis] = r.p
	}
	return m
}

// Pid is the process id of a running component (RoleGateway,
// RoleControlPlane, RoleUpstream, RoleRedis when the stack started
// redis-server), 0 when it is not running or not a child process.
func (s *Stack) Pid(role string) int {
	if p, ok := s.procs()[role]; ok {
		return p.pid()
	}
	return 0
}

// notify passes a supervision event on, or logs it when nobody listens.
func (s *Stack) notify(e Event) {
	if s.cfg.Notify != nil {
		s.cfg.Notify(e)
		return
	}
	if e.Kind == EventBack {
		s.log.Info("component restarted", "component", e.Component, "pid", e.Pid)
	} else {
		s.log.Warn("component "+string(e.Kind), "component", e.Component, "error", e.Err, "restart_in", e.Delay, "log", e.Log)
	}
}

// fail reports an error on Failed without blocking.
func (s *Stack) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

// policyInfo is what the stack needs from the plugin configuration: the
// control plane's cluster name and token, so that both sides agree.
type policyInfo struct {
	Cluster        string
	Token          string
	InsecureNoAuth bool
	raw            []byte
	routes         []host.Route // the route table, from Config.Routes
}

// readRoutes reads a route table strictly, as idemgate-host does.
func readRoutes(path string) ([]host.Route, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var routes []host.Route
	if err := dec.Decode(&routes); err != nil {
		return nil, fmt.Errorf("routes %s: %w", path, err)
	}
	return routes, nil
}

func readPolicy(path string) (policyInfo, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return policyInfo{}, fmt.Errorf("policy: %w", err)
	}
	var v struct {
		ControlPlane struct {
			Cluster        string `json:"cluster"`
			Token          string `json:"token"`
			InsecureNoAuth bool   `json:"insecure_no_auth"`
		} `json:"control_plane"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return policyInfo{}, fmt.Errorf("policy %s: %w", path, err)
	}
	if v.ControlPlane.Cluster == "" {
		return policyInfo{}, fmt.Errorf("policy %s: control_plane.cluster is empty", path)
	}
	return policyInfo{Cluster: v.ControlPlane.Cluster, Token: v.ControlPlane.Token, InsecureNoAuth: v.ControlPlane.InsecureNoAuth, raw: raw}, nil
}

func chooseGateway(want string) (string, error) {
	switch want {
	case GatewayAuto:
		if _, err := exec.LookPath("envoy"); err == nil {
			return GatewayEnvoy, nil
		}
		return GatewayHost, nil
	case GatewayEnvoy:
		if _, err := exec.LookPath("envoy"); err != nil {
			return "", fmt.Errorf("gateway envoy: %w", err)
		}
		return GatewayEnvoy, nil
	case GatewayHost:
		return GatewayHost, nil
	}
	return "", fmt.Errorf("gateway %q: want %q, %q or empty", want, GatewayEnvoy, GatewayHost)
}

// preflight finds the binaries and checks that every address is free, so
// that a taken port is named before anything starts.
func (s *Stack) preflight() error {
	bins := []string{BinControlPlane, BinUpstream}
	if s.gateway == GatewayHost {
		bins = append(bins, BinHost)
	} else if s.cfg.GatewayAdminAddr != "" || s.cfg.GatewayWorkers != 0 || s.cfg.CalloutAddr != "" || len(s.cfg.ExtraGateways) > 0 || len(s.cfg.GatewayArgs) > 0 {
		return fmt.Errorf("GatewayAdminAddr, GatewayWorkers, GatewayArgs, CalloutAddr and ExtraGateways need the local host gateway, not %s", s.gateway)
	}
	for _, b := range bins {
		p := filepath.Join(s.cfg.BinDir, b)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return &MissingBinaryError{Path: p}
		}
	}
	if st, err := os.Stat(s.cfg.Wasm); err != nil || st.IsDir() {
		return &MissingBinaryError{Path: s.cfg.Wasm}
	}
	addrs := []struct{ role, addr string }{
		{RoleGateway, s.cfg.GatewayAddr},
		{RoleControlPlane, s.cfg.ControlPlaneAddr},
		{RoleUpstream, s.cfg.UpstreamAddr},
	}
	if s.cfg.GatewayAdminAddr != "" {
		addrs = append(addrs, struct{ role, addr string }{RoleGateway + " admin", s.cfg.GatewayAdminAddr})
	}
	for i, g := range s.cfg.ExtraGateways {
		name := fmt.Sprintf("%s-%d", RoleGateway, i+2)
		addrs = append(addrs, struct{ role, addr string }{name, g.Addr})
		if g.Admin != "" {
			addrs = append(addrs, struct{ role, addr string }{name + " admin", g.Admin})
		}
	}
	seen := map[string]string{}
	for _, a := range addrs {
		if a.addr == "" {
			return fmt.Errorf("%s address is empty", a.role)
		}
		if other, dup := seen[a.addr]; dup {
			return &AddrInUseError{Role: a.role, Addr: a.addr, Err: fmt.Errorf("also given to the %s", other)}
		}
		seen[a.addr] = a.role
		if err := checkFree(a.addr); err != nil {
			return &AddrInUseError{Role: a.role, Addr: a.addr, Err: err}
		}
	}
	return nil
}

func (s *Stack) newProc(name, bin string, args, env []string) *proc {
	return &proc{
		name: name, bin: bin, args: args, env: env,
		logPath: logPath(s.cfg.LogDir, name),
		dir:     s.cfg.LogDir,
		crashed: s.crashed,
	}
}

// crashed records a component's unexpected exit for Failed.
func (s *Stack) crashed(name string, err error) {
	e := fmt.Errorf("%s exited unexpectedly (%w); its log: %s", name, err, logPath(s.cfg.LogDir, name))
	s.log.Error("component exited", "component", name, "error", err)
	s.fail(e)
}

func (s *Stack) launch(ctx context.Context, p *proc, ready func(context.Context) error) error {
	p.ready = ready
	if err := p.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := p.waitReady(ctx, ready); err != nil {
		return err
	}
	s.log.Info("component ready", "component", p.name, "log", p.logPath)
	return nil
}

func controlPlaneArgs(cfg Config, redisURL string, pol policyInfo) []string {
	args := []string{
		"--listen", cfg.ControlPlaneAddr,
		"--redis-url", redisURL,
		"--log-format", "text",
		"--log-level", cfg.LogLevel,
	}
	if pol.InsecureNoAuth {
		args = append(args, "--insecure-no-auth")
	}
	if !cfg.NoReconcile {
		args = append(args, "--reconcile-url", ReconcileURL(cfg.UpstreamAddr))
	}
	return append(args, cfg.ControlPlaneArgs...)
}

// ReconcileURL is the demo upstream's lookup URL template, as the control
// plane's --reconcile-url takes it.
func ReconcileURL(upstreamAddr string) string {
	return "http://" + upstreamAddr + upstream.PathReconcile + "{attempt}"
}

// reconcileCredential is a fresh bearer credential for the control
// plane's lookups, so that the demo upstream's check is exercised.
func reconcileCredential() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reconcile credential: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// controlPlaneEnv passes the tokens through the environment (flags show in
// ps) and clears settings the user's shell may carry that would change
// what the stack means.
func controlPlaneEnv(cfg Config, pol policyInfo, credential string) []string {
	env := []string{"IDEM_ADMIN_TOKEN=", "IDEMGATE_RECONCILE_TOKEN=", "IDEM_RECONCILE_URL="}
	if !pol.InsecureNoAuth {
		env = append(env, "IDEM_CONTROLPLANE_TOKEN="+pol.Token)
	}
	if !cfg.NoReconcile {
		env = append(env, "IDEMGATE_RECONCILE_TOKEN="+credential)
	}
	return env
}

// upstreamEnv gives the demo upstream the credential its lookups must
// carry (none with NoReconcile).
func upstreamEnv(cfg Config, credential string) []string {
	if cfg.NoReconcile {
		return []string{upstream.TokenEnv + "="}
	}
	return []string{upstream.TokenEnv + "=" + credential}
}

func (s *Stack) gatewayProc(pol policyInfo) (*proc, error) {
	if s.gateway == GatewayEnvoy {
		bootstrap := filepath.Join(s.cfg.LogDir, "envoy.yaml")
		wasm, err := filepath.Abs(s.cfg.Wasm)
		if err != nil {
			return nil, err
		}
		y, err := RenderEnvoy(EnvoyParams{
			GatewayAddr:      s.cfg.GatewayAddr,
			ControlPlaneAddr: s.cfg.ControlPlaneAddr,
			UpstreamAddr:     s.cfg.UpstreamAddr,
			ControlPlaneName: pol.Cluster,
			Wasm:             wasm,
			Policy:           string(pol.raw),
			Routes:           pol.routes,
		})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(bootstrap, y, 0o644); err != nil {
			return nil, fmt.Errorf("envoy bootstrap: %w", err)
		}
		bin, _ := exec.LookPath("envoy")
		return s.newProc(RoleGateway, bin, []string{"-c", bootstrap, "--use-dynamic-base-id", "--log-level", s.cfg.LogLevel}, nil), nil
	}
	return s.newProc(RoleGateway, filepath.Join(s.cfg.BinDir, BinHost), hostArgs(s.cfg, pol, s.cfg.GatewayAddr, s.cfg.GatewayAdminAddr), nil), nil
}

// hostArgs are the local host's flags for a gateway on addr.
func hostArgs(cfg Config, pol policyInfo, addr, admin string) []string {
	callouts := cfg.ControlPlaneAddr
	if cfg.CalloutAddr != "" {
		callouts = cfg.CalloutAddr
	}
	args := []string{
		"-listen", addr,
		"-wasm", cfg.Wasm,
		"-config", cfg.Policy,
		"-cluster", pol.Cluster + "=" + callouts,
		"-upstream", cfg.UpstreamAddr,
		"-log-level", cfg.LogLevel,
	}
	if cfg.Routes != "" {
		args = append(args, "-routes", cfg.Routes)
	}
	if admin != "" {
		args = append(args, "-admin", admin)
	}
	if cfg.GatewayWorkers > 0 {
		args = append(args, "-workers", strconv.Itoa(cfg.GatewayWorkers))
	}
	return append(args, cfg.GatewayArgs...)
}

// Gateway is the kind of gateway running: GatewayEnvoy or GatewayHost.
func (s *Stack) Gateway() string { return s.gateway }

// RedisAddr is the Redis the control plane uses; empty with
// Config.RedisURL (RedisURL says which).
func (s *Stack) RedisAddr() string { return s.redis.addr() }

// RedisURL is the --redis-url the control plane was given.
func (s *Stack) RedisURL() string { return s.redis.url() }

// RedisKind describes the Redis in use, for people.
func (s *Stack) RedisKind() string { return s.redis.kind() }

// RedisEmbedded says whether the Redis in use is the embedded dev-only
// store, which callers must announce (EmbeddedWarning).
func (s *Stack) RedisEmbedded() bool {
	_, ok := s.redis.(*embedded)
	return ok
}

// LogDir is where every component logs.
func (s *Stack) LogDir() string { return s.cfg.LogDir }

// LogFiles lists each component's log file.
func (s *Stack) LogFiles() map[string]string {
	m := map[string]string{}
	for _, p := range append([]*proc{s.gw, s.controlplane, s.upstream}, s.extra...) {
		if p != nil {
			m[p.name] = p.logPath
		}
	}
	if lp := s.redis.logPath(); lp != "" {
		m[RoleRedis] = lp
	}
	return m
}

// Tail returns the end of a component's log (at most n bytes).
func (s *Stack) Tail(role string, n int64) string {
	p, ok := s.LogFiles()[role]
	if !ok {
		return ""
	}
	return tail(p, n)
}

// Failed delivers an error for each component that exits without being
// asked to (a crash) or, with Config.Supervise, that the supervisor gave
// up on; the demo stops everything on the first.
func (s *Stack) Failed() <-chan error { return s.failed }

// Stop stops every component, gateway first, Redis last, after ending
// supervision (no restart begins once Stop has begun). Safe to call more
// than once.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		s.supMu.Lock()
		s.stopping = true
		s.supMu.Unlock()
		if s.supCancel != nil {
			s.supCancel()
		}
		for _, p := range append(append([]*proc{}, s.extra...), s.gw, s.upstream, s.controlplane) {
			if p != nil {
				p.stop()
			}
		}
		if s.redis != nil {
			s.redis.stop()
		}
		s.supWG.Wait()
	})
}

// KillControlPlane ends the control plane with SIGKILL: no drain, no
// goodbye, as in a crash.
func (s *Stack) KillControlPlane(context.Context) error {
	s.controlplane.kill()
	return nil
}

// StartControlPlane starts the control plane on its address and waits
// until /readyz says Redis answers.
func (s *Stack) StartControlPlane(ctx context.Context) error {
	return s.launch(ctx, s.controlplane, httpReady("http://"+s.cfg.ControlPlaneAddr+"/readyz"))
}

// RestartControlPlane stops the control plane gracefully (SIGTERM: it
// drains in-flight calls) and starts it again on the same address. Leases
// held by requests in flight live in Redis and outlast it.
func (s *Stack) RestartControlPlane(ctx context.Context) error {
	s.controlplane.stop()
	return s.StartControlPlane(ctx)
}

// RestartRedis stops Redis gracefully and starts it again on the same port,
// then waits until the control plane reports ready again. With the private
// redis-server (append-only file on) records survive; connections and
// loaded scripts do not.
func (s *Stack) RestartRedis(ctx context.Context) error {
	if err := s.redis.restart(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	return s.controlplane.waitReady(ctx, httpReady("http://"+s.cfg.ControlPlaneAddr+"/readyz"))
}

// ErrNotOurs is returned for a fault on a component the stack did not start.
var ErrNotOurs = errors.New("not started by the stack")
