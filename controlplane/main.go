// Command controlplane is idemgate's key service: an HTTP/JSON API over
// Redis that every Envoy's idempotency filter shares. See README.md in this
// directory for the API, the configuration and the operations guide.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // could not listen, or serving failed
	exitUsage   = 2 // invalid configuration
)

// run starts the service and serves until ctx ends, then drains.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		var c config
		fs, _ := newFlagSet(&c, stderr)
		fs.Usage()
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "controlplane: %v\n", err)
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	// go-redis logs pool and failover events through a global logger;
	// route them into the structured log.
	redisLog.Store(log)

	var sealer *seal.Sealer
	if len(cfg.EncryptionKeys) > 0 {
		if sealer, err = seal.New(cfg.EncryptionKeys[0], cfg.EncryptionKeys[1:]...); err != nil {
			fmt.Fprintf(stderr, "controlplane: %s: %v\n", envEncryptionKey, err)
			return exitUsage
		}
	}
	client, err := store.NewClient(cfg.RedisURL, cfg.Redis)
	if err != nil {
		fmt.Fprintf(stderr, "controlplane: --redis-url: %v\n", err)
		return exitUsage
	}
	defer client.Close()
	reg := server.NewRegistry()
	redisMetrics := server.NewRedisMetrics(reg)
	sopt := cfg.storeOptions()
	sopt.Observer = redisMetrics.Observer()
	st := store.New(client, sopt)
	rec := newReconciler(cfg, st, sealer, reg, log)
	var reconciler server.Reconciler // a nil *Reconciler must stay a nil interface
	if rec != nil {
		reconciler = rec
	}
	handler, err := server.New(st, server.Options{
		Registry:        reg,
		Token:           cfg.Token,
		AdminToken:      cfg.AdminToken,
		InsecureNoAuth:  cfg.InsecureNoAuth,
		MaxRequestBytes: cfg.MaxRequestBytes,
		OpTimeout:       cfg.OpTimeout,
		ReadyTimeout:    cfg.ReadyTimeout,
		Sealer:          sealer,
		Logger:          log,
		MaxInFlight:     cfg.MaxInFlight,
		Reconciler:      reconciler,
	})
	if err != nil {
		fmt.Fprintf(stderr, "controlplane: %v\n", err)
		return exitUsage
	}

	if cfg.InsecureNoAuth {
		log.Warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this address can reserve and complete keys, read stored responses and delete records. Local development only; never expose this address.",
			"listen", cfg.Listen)
	}
	target, _ := store.ParseRedisURL(cfg.RedisURL) // validated by parseConfig
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("cannot listen", "listen", cfg.Listen, "error", err)
		return exitFailure
	}
	log.Info("control plane listening",
		"addr", ln.Addr().String(),
		"redis", target.String(),
		"auth", authMode(cfg),
		"encryption_at_rest", sealer != nil,
		"fingerprint_hash", fingerprintMode(cfg),
		"lease", cfg.Lease, "ttl", cfg.TTL,
		"max_stored_response", cfg.MaxStoredResponse,
		"max_request_bytes", cfg.MaxRequestBytes,
		"durable", cfg.Durable.String(),
		"redis_max_retries", cfg.RedisMaxRetries,
		"max_inflight", cfg.MaxInFlight,
		"redis_pool_timeout", cfg.Redis.PoolTimeout,
		"reconcile_targets", targetNames(cfg.Reconcile.Targets))
	// Redis being down at start is not fatal: /readyz reports it and the
	// API answers 503 until it is back.
	pctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	if err := st.Ping(pctx); err != nil {
		log.Warn("Redis does not answer yet; /readyz says not ready until it does", "redis", target.String(), "error", err)
	} else {
		checkEvictionPolicy(pctx, client, log)
	}
	cancel()
	if cfg.Durable.On() {
		// What Redis cannot give is fatal (WAITAOF on Redis < 7.2, or
		// appendonly off with --durable-fsync): every state change would
		// answer 503. A Redis down at start is checked when it answers.
		dctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
		notes, err := st.CheckDurability(dctx)
		cancel()
		if err != nil && !errors.Is(err, store.ErrUnavailable) && !isNetErr(err) {
			log.Error("durable mode cannot work on this Redis", "durable", cfg.Durable.String(), "error", err)
			fmt.Fprintf(stderr, "controlplane: durable mode: %v\n", err)
			return exitUsage
		}
		if err != nil {
			log.Warn("durable mode not checked: Redis does not answer yet", "error", err)
		}
		for _, n := range notes {
			log.Info("durable mode: " + n)
		}
	}
	// The topology watcher counts failovers (idemgate_redis_failovers_total)
	// until shutdown.
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		st.WatchTopology(wctx, cfg.WatchPeriod, log)
	}()
	defer func() { stopWatch(); <-watchDone }()
	// The reconciler asks upstreams about indeterminate records of routes
	// that reconcile, until shutdown; only with a target to ask.
	if rec != nil {
		rctx, stopReconcile := context.WithCancel(ctx)
		reconcileDone := make(chan struct{})
		go func() {
			defer close(reconcileDone)
			rec.Run(rctx)
		}()
		defer func() { stopReconcile(); <-reconcileDone }()
	}

	if err := serve(ctx, newHTTPServer(cfg, handler, log), ln, cfg.ShutdownTimeout, log); err != nil {
		log.Error("serving failed", "error", err)
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

// newReconciler builds the reconciler of the configured lookup targets,
// its metrics on reg; nil when there is none (reconcile off).
func newReconciler(cfg config, st *store.Store, sealer *seal.Sealer, reg *prometheus.Registry, log *slog.Logger) *reconcile.Reconciler {
	names := targetNames(cfg.Reconcile.Targets)
	m := reconcile.NewMetrics(reg, names)
	if len(names) == 0 {
		return nil
	}
	c := reconcile.NewClient(cfg.Reconcile.Targets, nil, cfg.Reconcile.Timeout, reconcile.MaxAnswerBytes(cfg.MaxStoredResponse))
	return reconcile.New(st, c, reconcile.Options{
		Interval:    cfg.Reconcile.Interval,
		Concurrency: cfg.Reconcile.Concurrency,
		MaxBackoff:  cfg.Reconcile.MaxBackoff,
		OpTimeout:   cfg.OpTimeout,
		Sealer:      sealer,
		Logger:      log,
		Metrics:     m,
	})
}

func targetNames(ts []reconcile.Target) []string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return names
}

// checkEvictionPolicy reads maxmemory-policy on Redis (every master of a
// Cluster) and warns unless it is noeviction: every record has a TTL, so
// any volatile-* or allkeys-* policy may evict an in-progress or completed
// record under memory pressure, and the next request with its key would
// execute a second time. A Redis that refuses CONFIG (managed services
// often do) is no reason to warn: that is logged at INFO and ignored.
func checkEvictionPolicy(ctx context.Context, c redis.UniversalClient, log *slog.Logger) {
	check := func(ctx context.Context, node *redis.Client) error {
		res, err := node.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			return err
		}
		policy, ok := res["maxmemory-policy"]
		if !ok {
			return errors.New("CONFIG GET maxmemory-policy answered no value")
		}
		if policy != "noeviction" {
			log.Warn("Redis may evict idempotency records: maxmemory-policy is not noeviction; an evicted in-progress or completed record lets a retry execute a second time. Set maxmemory-policy noeviction (see the README, Redis durability)",
				"redis_node", node.Options().Addr, "maxmemory_policy", policy)
		}
		return nil
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		err = cc.ForEachMaster(ctx, check)
	case *redis.Client:
		err = check(ctx, cc)
	default:
		return
	}
	if err != nil {
		log.Info("cannot read Redis's maxmemory-policy (CONFIG may be forbidden); make sure it is noeviction", "error", err)
	}
}

// isNetErr tells a Redis that did not answer (down at start) from one that
// answered no.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF)
}

func authMode(c config) string {
	switch {
	case c.InsecureNoAuth:
		return "OFF"
	case c.AdminToken != "":
		return "bearer token; separate admin token"
	}
	return "bearer token (admin endpoints too)"
}

func newLogger(c config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// redisLogger adapts slog to go-redis's internal logger. Its messages
// (dial failures, Sentinel failovers, Cluster reloads) go out at Info: a
// failing request is also logged at Error by the server, with the cause.
// redisLog is where go-redis's global logger writes. go-redis reads its
// logger from a plain global, so it is set once, before any client exists
// (init), and run only swaps the slog.Logger behind it: setting the global
// in run raced with the pool goroutines of clients created earlier in the
// same process (seen under -race in the tests).
var redisLog atomic.Pointer[slog.Logger]

func init() {
	redisLog.Store(slog.Default())
	redis.SetLogger(redisLogger{})
}

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	redisLog.Load().Log(ctx, slog.LevelInfo, fmt.Sprintf(format, v...), "component", "go-redis")
}

// HTTP server timeouts. The callers are Envoy's filter (small reserve and
// release bodies, a complete of up to a few MiB, all on a fast network) and
// operators.
const (
	// readHeaderTimeout: a slow-loris client cannot hold a connection
	// without sending its headers.
	readHeaderTimeout = 5 * time.Second
	// readTimeout covers headers and a complete's body (≤ ~2 MiB): seconds
	// even on a slow link.
	readTimeout = 30 * time.Second
	// writeTimeoutSlack is added to the op timeout: the answer is written
	// right after the store call.
	writeTimeoutSlack = 10 * time.Second
	// idleTimeout closes keep-alive connections idle this long. Envoy pools
	// connections to the control plane; set its cluster's idle_timeout
	// below this (e.g. 60s) so Envoy, not the server, closes idle ones and
	// never sends on a connection the server is closing.
	idleTimeout = 5 * time.Minute
	// maxHeaderBytes: our requests carry a handful of short headers.
	maxHeaderBytes = 32 << 10
)

func newHTTPServer(c config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              c.Listen,
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      readTimeout + c.OpTimeout + writeTimeoutSlack,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serve serves on ln until ctx ends, then stops accepting connections and
// waits up to shutdownTimeout for in-flight requests to finish; past it the
// remaining connections are closed. It returns nil after a clean drain.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err // Serve never returns nil
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: in-flight requests did not finish within %v: %w", shutdownTimeout, err)
	}
	return nil
}

// fingerprintMode names what Redis keeps of fingerprints, for the start
// line.
func fingerprintMode(c config) string {
	switch len(c.FingerprintKeys) {
	case 0:
		return "sha256 (unkeyed: set " + c.FingerprintKeyEnv + ")"
	case 1:
		return "hmac-sha256"
	}
	return "hmac-sha256 (previous key accepted)"
}
