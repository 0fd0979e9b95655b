// Package server is the control plane's HTTP API: the filter's reserve,
// complete, release and abandon, the operators' admin endpoints, health, readiness
// and Prometheus metrics. It is built on a Store interface that
// *store.Store satisfies; it validates at the edge, authenticates, limits
// request sizes, optionally seals stored bodies, and answers every error
// as application/problem+json.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/seal"
)

// Store is what the API needs of the key store; *store.Store implements
// it. Errors are store.ErrStaleToken, store.ErrNotFound,
// store.ErrNotInProgress, store.ErrLeaseLive, store.ErrFenced (beside an answer),
// store.ErrInvalidRequest, or a failure to reach Redis (answered 503;
// store.ErrNotDurable too). A store that also has Ready(ctx) error
// (*store.Store) answers /readyz with it, else with Ping.
type Store interface {
	Reserve(ctx context.Context, req api.ReserveRequest) (api.ReserveResponse, error)
	Complete(ctx context.Context, req api.CompleteRequest) error
	Release(ctx context.Context, req api.ReleaseRequest) error
	ReleaseHolder(ctx context.Context, scope, key, holder string) (deleted bool, err error)
	Abandon(ctx context.Context, req api.AbandonRequest) error
	Get(ctx context.Context, scope, key string, withBody bool) (*api.Record, error)
	Delete(ctx context.Context, scope, key string) (*api.Record, error)
	ForceRelease(ctx context.Context, scope, key string) (*api.Record, error)
	DeleteUnlessLeased(ctx context.Context, scope, key string) (*api.Record, error)
	ReleaseUnlessLeased(ctx context.Context, scope, key string) (*api.Record, error)
	List(ctx context.Context, state api.State, scope, cursor string, limit int) ([]api.Record, string, error)
	EdgeEpoch(ctx context.Context) (int64, error)
	BumpEdgeEpoch(ctx context.Context) (int64, error)
	Ping(ctx context.Context) error
}

// Defaults of Options.
const (
	DefaultOpTimeout    = time.Second
	DefaultReadyTimeout = time.Second
)

// Options configure a Server.
type Options struct {
	// Token is the bearer token every /v1/ request must present. Required
	// unless InsecureNoAuth.
	Token string
	// AdminToken, when set, is the only token the admin endpoints accept
	// (Token is then refused there with 403): the filter's token, present
	// on every Envoy, cannot read stored bodies or delete keys. Empty: the
	// admin endpoints accept Token.
	AdminToken string
	// InsecureNoAuth turns authentication off, for local development only.
	InsecureNoAuth bool
	// MaxRequestBytes limits a request body (in practice: a complete).
	// Zero means DefaultMaxRequestBytes(api.DefaultMaxStoredBody).
	MaxRequestBytes int64
	// OpTimeout bounds each store call; past it the API answers 503.
	OpTimeout time.Duration
	// ReadyTimeout bounds /readyz's Redis checks.
	ReadyTimeout time.Duration
	// Sealer, when set, encrypts stored response bodies at rest: bodies are
	// sealed before Complete and opened after Reserve and Get, bound to
	// their scope and key.
	Sealer *seal.Sealer
	// Logger receives one line per request (see the README for levels);
	// nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics and is served on /metrics; nil means
	// NewRegistry().
	Registry *prometheus.Registry
	// MaxInFlight bounds the store operations in flight: beyond it a
	// request is answered 503 overloaded, a reserve (edge-epoch, admin) at
	// once and already at three quarters of it, an outcome call after
	// waiting up to 50 ms for a slot (admit.go). Zero means
	// DefaultMaxInFlight; negative means no bound.
	MaxInFlight int
	// Reconciler, when set, serves the admin reconcile endpoint and says
	// which lookup targets exist; a reserve with on_indeterminate
	// "reconcile" naming a target it lacks (or any, when nil) is refused
	// with 400 rather than burn keys no lookup would ever resolve.
	// *reconcile.Reconciler implements it.
	Reconciler Reconciler
}

// Reconciler is what the API needs of the reconciler.
type Reconciler interface {
	HasTarget(name string) bool
	// Reconcile looks up one record now and applies the answer unless
	// dryRun; errors as reconcile.Reconciler.Reconcile's.
	Reconcile(ctx context.Context, scope, key string, dryRun bool) (api.AdminResult, error)
}

// Server is the API's http.Handler.
type Server struct {
	store   Store
	opt     Options
	log     *slog.Logger
	m       *metrics
	reg     *prometheus.Registry
	routes  map[string]*route
	metrics http.Handler
	token   [sha256.Size]byte
	admin   [sha256.Size]byte
	gate    *gate
	// outcomeWait: how long an outcome call waits for a slot (admit.go).
	outcomeWait time.Duration
	// shedSince counts sheds since the last "shedding load" line, written
	// at shedLogged (unix nanoseconds).
	shedSince  atomic.Int64
	shedLogged atomic.Int64
}

type authLevel int

const (
	authNone authLevel = iota
	authAPI
	authAdmin
)

type handlerFunc func(w http.ResponseWriter, r *http.Request, ri *reqInfo)

type route struct {
	name    string // the "route" label
	auth    authLevel
	methods map[string]handlerFunc
	allow   string
}

// reqInfo is what a handler reports for the request's log line and metrics.
type reqInfo struct {
	route       string // the route label
	op, outcome string
	scope, key  string
	err         error // logged, never sent
	alert       bool  // log at ERROR whatever the status (a 200 hiding a fault)
	warn        bool  // log at WARN whatever the status (a 200 worth an operator's eye)
	quiet       bool  // log at DEBUG whatever the status (a shed request: counted, and warned of once a second)
}

// New returns a Server over st.
func New(st Store, opt Options) (*Server, error) {
	if !opt.InsecureNoAuth && opt.Token == "" {
		return nil, errors.New("server: a token is required unless InsecureNoAuth")
	}
	if opt.MaxRequestBytes == 0 {
		opt.MaxRequestBytes = DefaultMaxRequestBytes(api.DefaultMaxStoredBody)
	}
	if opt.MaxRequestBytes < 0 {
		return nil, errors.New("server: MaxRequestBytes is negative")
	}
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = DefaultOpTimeout
	}
	if opt.ReadyTimeout <= 0 {
		opt.ReadyTimeout = DefaultReadyTimeout
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Registry == nil {
		opt.Registry = NewRegistry()
	}
	if opt.MaxInFlight == 0 {
		opt.MaxInFlight = DefaultMaxInFlight
	}
	g := newGate(opt.MaxInFlight)
	s := &Server{
		store: st,
		opt:   opt,
		log:   opt.Logger,
		m:     newMetrics(opt.Registry, g.inFlight),
		reg:   opt.Registry,
		gate:  g,

		outcomeWait: outcomeWait,
		token:       sha256.Sum256([]byte(opt.Token)),
		admin:       sha256.Sum256([]byte(opt.AdminToken)),
	}
	s.metrics = promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(opt.Logger.Handler(), slog.LevelError),
	})
	s.routes = map[string]*route{}
	add := func(path, name string, auth authLevel, methods map[string]handlerFunc) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete} {
			if methods[m] != nil {
				allow = append(allow, m)
			}
		}
		s.routes[path] = &route{name: name, auth: auth, methods: methods, allow: strings.Join(allow, ", ")}
	}
	add(api.PathReserve, "reserve", authAPI, map[string]handlerFunc{http.MethodPost: s.reserve})
	add(api.PathComplete, "complete", authAPI, map[string]handlerFunc{http.MethodPost: s.complete})
	add(api.PathRelease, "release", authAPI, map[string]handlerFunc{http.MethodPost: s.release})
	add(api.PathAbandon, "abandon", authAPI, map[string]handlerFunc{http.MethodPost: s.abandon})
	add(api.PathAdminKeys, "admin_keys", authAdmin, map[string]handlerFunc{http.MethodGet: s.adminGet, http.MethodDelete: s.adminDelete})
	add(api.PathAdminRelease, "admin_release", authAdmin, map[string]handlerFunc{http.MethodPost: s.adminRelease})
	add(api.PathAdminKeyList, "admin_list", authAdmin, map[string]handlerFunc{http.MethodGet: s.adminList})
	add(api.PathAdminReconcile, "admin_reconcile", authAdmin, map[string]handlerFunc{http.MethodPost: s.adminReconcile})
	add(api.PathEdgeEpoch, "edge_epoch", authAPI, map[string]handlerFunc{http.MethodGet: s.edgeEpoch})
	add(api.PathHealthz, "healthz", authNone, map[string]handlerFunc{http.MethodGet: s.healthz, http.MethodHead: s.healthz})
	add(api.PathReadyz, "readyz", authNone, map[string]handlerFunc{http.MethodGet: s.readyz, http.MethodHead: s.readyz})
	add(api.PathMetrics, "metrics", authNone, map[string]handlerFunc{http.MethodGet: s.serveMetrics, http.MethodHead: s.serveMetrics})
	return s, nil
}

// Registry is the registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP routes, authenticates, runs the handler, then logs and counts.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	rt := s.routes[r.URL.Path]
	routeName := "other"
	if rt != nil {
		routeName = rt.name
	}
	ri := &reqInfo{route: routeName}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "route", routeName, "panic", v, "stack", string(debug.Stack()))
			ri.outcome = outError
			if w.status == 0 {
				writeProblem(w, &problem{http.StatusInternalServerError, probInternal, "Internal error", "the control plane failed; see its log"})
			}
		}
		d := time.Since(start)
		if w.status == 0 {
			w.status = http.StatusOK
		}
		s.m.requests.WithLabelValues(routeName, strconv.Itoa(w.status)).Inc()
		if ri.op != "" {
			if ri.outcome == "" {
				ri.outcome = outError
			}
			s.m.observe(ri.op, ri.outcome, d)
		}
		s.logRequest(r, routeName, w.status, ri, d)
	}()

	if rt == nil {
		writeProblem(w, &problem{http.StatusNotFound, probNotFound, "Not found",
			"no such endpoint: " + r.URL.Path})
		return
	}
	h := rt.methods[r.Method]
	if h == nil {
		w.Header().Set(headerAllow, rt.allow)
		writeProblem(w, &problem{http.StatusMethodNotAllowed, probMethod, "Method not allowed",
			r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + rt.allow})
		return
	}
	if p := s.authenticate(r, rt.auth); p != nil {
		if p.status == http.StatusUnauthorized {
			challenge := `Bearer realm="idemgate"`
			if _, ok := bearerToken(r); ok {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set(headerWWWAuth, challenge)
		}
		writeProblem(w, p)
		return
	}
	h(w, r, ri)
}

// bearerToken returns the token of an "Authorization: Bearer T" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// authenticate checks the bearer token for the route's level. Tokens are
// compared as SHA-256 digests in constant time, so neither their content
// nor their length leaks through timing.
func (s *Server) authenticate(r *http.Request, level authLevel) *problem {
	if level == authNone || s.opt.InsecureNoAuth {
		return nil
	}
	tok, ok := bearerToken(r)
	if !ok {
		return &problem{http.StatusUnauthorized, probUnauthorized, "Unauthorized",
			"this endpoint needs an Authorization: Bearer token"}
	}
	got := sha256.Sum256([]byte(tok))
	apiOK := subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
	if level == authAdmin && s.opt.AdminToken != "" {
		if subtle.ConstantTimeCompare(got[:], s.admin[:]) == 1 {
			return nil
		}
		if apiOK {
			return &problem{http.StatusForbidden, probForbidden, "Forbidden",
				"the admin endpoints need the admin token, not the filter's token"}
		}
		return &problem{http.StatusUnauthorized, probUnauthorized, "Unauthorized", "the bearer token is not valid"}
	}
	if !apiOK {
		return &problem{http.StatusUnauthorized, probUnauthorized, "Unauthorized", "the bearer token is not valid"}
	}
	return nil
}

// logRequest writes one line per request: Debug for successes, Info for
// refusals (4xx), Warn for authentication failures and for a reserve that
// found a lease ended (a key just became indeterminate), Error for failures
// (5xx) and for answers that hide a fault (a reserve answered completed
// without the stored response it could not read), except a request shed by
// admission control: Debug, since under overload a line per shed request
// would add load (admit.go warns once a second instead). It never logs
// bodies or tokens.
func (s *Server) logRequest(r *http.Request, route string, status int, ri *reqInfo, d time.Duration) {
	level := slog.LevelDebug
	switch {
	case ri.quiet:
	case status >= 500 || ri.alert:
		level = slog.LevelError
	case status == http.StatusUnauthorized || status == http.StatusForbidden || ri.warn:
		level = slog.LevelWarn
	case status >= 400:
		level = slog.LevelInfo
	}
	ctx := r.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	if id := r.Header.Get(headerRequestID); id != "" {
		if len(id) > maxLoggedRequestIDs {
			id = id[:maxLoggedRequestIDs]
		}
		attrs = append(attrs, slog.String("request_id", id))
	}
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", d),
	)
	if route == "other" {
		p := r.URL.Path
		if len(p) > 256 {
			p = p[:256]
		}
		attrs = append(attrs, slog.String("path", p))
	}
	if ri.op != "" {
		attrs = append(attrs, slog.String("op", ri.op), slog.String("outcome", ri.outcome))
	}
	if ri.scope != "" {
		attrs = append(attrs, slog.String("scope", ri.scope))
	}
	if ri.key != "" {
		attrs = append(attrs, slog.String("key", ri.key))
	}
	if ri.err != nil {
		attrs = append(attrs, slog.String("error", ri.err.Error()))
	}
	s.log.LogAttrs(ctx, level, "request", attrs...)
}
