package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
)

// config is the validated configuration of the service.
type config struct {
	Listen         string
	RedisURL       string
	Token          string
	AdminToken     string
	InsecureNoAuth bool

	Lease             time.Duration
	TTL               time.Duration
	FenceTTL          time.Duration // 0: the store's default
	MaxStoredResponse int
	MaxRequestBytes   int64 // resolved: never 0
	RedisPrefix       string

	OpTimeout    time.Duration
	ReadyTimeout time.Duration
	// MaxInFlight bounds the store operations in flight (server.Options;
	// resolved: 0 becomes the default, -1 stays: no bound).
	MaxInFlight     int
	ShutdownTimeout time.Duration
	Redis           store.ClientOptions
	// RedisMaxRetries: the store's retries of an operation after a
	// failover or restart error (store.Options.MaxRetries): -1 none, 0
	// the default.
	RedisMaxRetries int
	// Durable: wait for replicas after every state change (off when
	// Replicas is 0 and Fsync false).
	Durable store.Durability
	// WatchPeriod: how often the topology watcher looks for a failover
	// (not a flag; tests shorten it).
	WatchPeriod time.Duration

	LogLevel  slog.Level
	LogFormat string // "json" or "text"

	// EncryptionKeys: empty means no encryption at rest; else the first
	// key seals and every key opens.
	EncryptionKeys [][]byte

	// FingerprintKeyEnv names the environment variable holding the key of
	// the fingerprint hash (FingerprintKeys[0]); its _PREVIOUS twin holds
	// the key before a rotation. Empty FingerprintKeys: unkeyed SHA-256.
	FingerprintKeyEnv string
	FingerprintKeys   [][]byte

	// ReconcileURLs are the --reconcile-url values as given ([NAME=]TEMPLATE);
	// Reconcile holds them resolved, with the loop's settings.
	ReconcileURLs stringList
	Reconcile     reconcileConfig

	showVersion bool // --version: parseConfig answers errVersion
}

// reconcileConfig configures the reconciler (reconcile.Options and its
// lookup client). No targets: reconcile is off, and a reserve that asks
// for it is refused.
type reconcileConfig struct {
	Targets     []reconcile.Target
	Delay       time.Duration // store.Options.ReconcileDelay: from an abandon to the first lookup
	Interval    time.Duration
	Concurrency int
	Timeout     time.Duration
	MaxBackoff  time.Duration
}

// maxReconcileConcurrency bounds --reconcile-concurrency: each lookup is a
// goroutine and a connection to an upstream.
const maxReconcileConcurrency = 1024

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, " ") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// errVersion is parseConfig's answer to --version, as flag.ErrHelp is to
// --help.
var errVersion = errors.New("version requested")

// Environment variables. Flags win over them.
const (
	envListen          = "IDEM_CONTROLPLANE_ADDR"
	envRedisURL        = "IDEM_REDIS_URL"
	envRedisAddr       = "IDEM_REDIS_ADDR" // host:port, read as redis://host:port when IDEM_REDIS_URL is unset
	envToken           = "IDEM_CONTROLPLANE_TOKEN"
	envAdminToken      = "IDEM_ADMIN_TOKEN"
	envEncryptionKey   = "IDEM_ENCRYPTION_KEY"
	envEncryptionPrev  = "IDEM_ENCRYPTION_KEY_PREVIOUS"
	envFingerprintKey  = "IDEM_FINGERPRINT_KEY"
	envReconcileURL    = "IDEM_RECONCILE_URL"
	previousSuffix     = "_PREVIOUS"
	defaultListen      = "127.0.0.1:8081"
	defaultRedisURL    = "redis://127.0.0.1:6379"
	defaultShutdown    = 15 * time.Second
	minTokenLen        = 16
	tokenCharsetForErr = "A-Z a-z 0-9 - . _ ~ + / ="
)

// flagEnv maps a flag to its environment variable.
var flagEnv = map[string]string{
	"listen":              envListen,
	"redis-url":           envRedisURL,
	"token":               envToken,
	"admin-token":         envAdminToken,
	"lease":               "IDEM_LEASE",
	"ttl":                 "IDEM_TTL",
	"fence-ttl":           "IDEM_FENCE_TTL",
	"max-stored-response": "IDEM_MAX_STORED_RESPONSE",
	"max-request-bytes":   "IDEM_MAX_REQUEST_BYTES",
	"redis-prefix":        "IDEM_REDIS_PREFIX",
	"op-timeout":          "IDEM_OP_TIMEOUT",
	"ready-timeout":       "IDEM_READY_TIMEOUT",
	"shutdown-timeout":    "IDEM_SHUTDOWN_TIMEOUT",
	"redis-dial-timeout":  "IDEM_REDIS_DIAL_TIMEOUT",
	"redis-read-timeout":  "IDEM_REDIS_READ_TIMEOUT",
	"redis-write-timeout": "IDEM_REDIS_WRITE_TIMEOUT",
	"redis-pool-size":     "IDEM_REDIS_POOL_SIZE",
	"redis-pool-timeout":  "IDEM_REDIS_POOL_TIMEOUT",
	"max-inflight":        "IDEM_MAX_INFLIGHT",
	"redis-max-retries":   "IDEM_REDIS_MAX_RETRIES",
	"durable-replicas":    "IDEM_DURABLE_REPLICAS",
	"durable-timeout":     "IDEM_DURABLE_TIMEOUT",
	"durable-fsync":       "IDEM_DURABLE_FSYNC",
	// IDEM_RECONCILE_URL may hold several values, separated by spaces.
	"reconcile-url":         envReconcileURL,
	"reconcile-delay":       "IDEM_RECONCILE_DELAY",
	"reconcile-interval":    "IDEM_RECONCILE_INTERVAL",
	"reconcile-concurrency": "IDEM_RECONCILE_CONCURRENCY",
	"reconcile-timeout":     "IDEM_RECONCILE_TIMEOUT",
	"reconcile-max-backoff": "IDEM_RECONCILE_MAX_BACKOFF",
	"log-level":             "IDEM_LOG_LEVEL",
	"log-format":            "IDEM_LOG_FORMAT",
	// --insecure-no-auth has no environment variable on purpose: turning
	// authentication off must be visible on the command line.
}

// newFlagSet defines the flags into c and returns the set.
func newFlagSet(c *config, out io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	fs.SetOutput(out)
	var logLevel string
	fs.StringVar(&c.Listen, "listen", defaultListen, "`ADDRESS` (host:port) to serve the API on")
	fs.StringVar(&c.RedisURL, "redis-url", defaultRedisURL, "Redis `URL`: redis://, rediss://, redis-cluster://h1:p1,h2:p2 or redis-sentinel://h1:p1,h2:p2/MASTER (env IDEM_REDIS_URL, else IDEM_REDIS_ADDR as host:port)")
	fs.StringVar(&c.Token, "token", "", "bearer `TOKEN` the filter presents; required unless --insecure-no-auth (prefer the environment variable: flags show in ps)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "separate bearer `TOKEN` for the admin endpoints; unset: they accept --token")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", false, "serve without authentication: LOCAL DEVELOPMENT ONLY")
	fs.DurationVar(&c.Lease, "lease", api.DefaultLease, "default lease of a reservation")
	fs.DurationVar(&c.TTL, "ttl", api.DefaultTTL, "default lifetime of a record")
	fs.DurationVar(&c.FenceTTL, "fence-ttl", 0, "how long a release by holder fences that holder out; 0: --lease + --ttl, at least "+store.DefaultFenceTTL.String()+" (a reserve arriving after its fence would lock the key for its TTL with nothing forwarded)")
	fs.IntVar(&c.MaxStoredResponse, "max-stored-response", api.DefaultMaxStoredBody, "cap in `BYTES` on a stored response (headers and body); over it only the status is kept (body_omitted)")
	fs.Int64Var(&c.MaxRequestBytes, "max-request-bytes", 0, "request body limit in `BYTES`; 0: 2 × max-stored-response + 64 KiB")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", store.DefaultPrefix, "`PREFIX` of every Redis key (≤ 64 bytes, no braces)")
	fs.DurationVar(&c.OpTimeout, "op-timeout", server.DefaultOpTimeout, "bound on one store operation; past it the API answers 503")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", server.DefaultReadyTimeout, "bound on /readyz's Redis checks (a master answers; replicas in durable mode)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", defaultShutdown, "on SIGINT/SIGTERM, how long in-flight requests may take to finish")
	fs.DurationVar(&c.Redis.DialTimeout, "redis-dial-timeout", store.DefaultDialTimeout, "Redis connect timeout")
	fs.DurationVar(&c.Redis.ReadTimeout, "redis-read-timeout", store.DefaultReadTimeout, "Redis read timeout")
	fs.DurationVar(&c.Redis.WriteTimeout, "redis-write-timeout", store.DefaultWriteTimeout, "Redis write timeout")
	fs.IntVar(&c.Redis.PoolSize, "redis-pool-size", 0, "Redis connections per node; 0: 10 per GOMAXPROCS")
	fs.DurationVar(&c.Redis.PoolTimeout, "redis-pool-timeout", store.DefaultPoolTimeout, "how long an operation waits for a free Redis connection when the pool is full; past it 503 (retried once like a timeout)")
	fs.IntVar(&c.MaxInFlight, "max-inflight", 0, fmt.Sprintf("bound on store operations in flight; beyond it 503 overloaded (reserves, edge-epoch and admin get three quarters of it and never wait; complete/release/abandon all of it, first, waiting up to 50ms for a slot). `N` ≥ 2; 0: %d; -1: no bound", server.DefaultMaxInFlight))
	fs.IntVar(&c.RedisMaxRetries, "redis-max-retries", store.DefaultMaxRetries, "retries of an operation after a failover or restart error (READONLY, LOADING, a reset connection, a timeout…), backing off 10ms doubling to 200ms within --op-timeout; each counted in idemgate_redis_retries_total; -1: none, 0: the store's default")
	fs.IntVar(&c.Durable.Replicas, "durable-replicas", 0, "durable mode: every state change waits for `N` replicas to acknowledge it (WAIT N) before the answer; fewer in time answers 503. 0: off")
	fs.DurationVar(&c.Durable.Timeout, "durable-timeout", store.DefaultDurableTimeout, "durable mode: how long a state change waits for the replicas; less than --op-timeout and --redis-read-timeout")
	fs.BoolVar(&c.Durable.Fsync, "durable-fsync", false, "durable mode: WAITAOF 1 N instead of WAIT N, the master's AOF fsync too (Redis 7.2 or later, appendonly yes; checked at start)")
	fs.StringVar(&c.FingerprintKeyEnv, "fingerprint-key-env", envFingerprintKey, "`NAME` of the environment variable holding the fingerprint key (base64 of 32 bytes; NAME_PREVIOUS: the key before a rotation). Redis keeps HMAC-SHA-256 of each fingerprint under it; unset, SHA-256")
	fs.Var(&c.ReconcileURLs, "reconcile-url", "lookup URL of an upstream that implements the reconcile contract, `[NAME=]TEMPLATE` (repeatable; bare: the target \"default\"); placeholders {key}, {attempt}, {scope}; its bearer credential comes from "+reconcile.CredentialEnvPrefix+"[_NAME]. Unset: reconcile is off")
	fs.DurationVar(&c.Reconcile.Delay, "reconcile-delay", store.DefaultReconcileDelay, "reconcile: how long after an abandon the first lookup is due")
	fs.DurationVar(&c.Reconcile.Interval, "reconcile-interval", reconcile.DefaultInterval, "reconcile: how often the loop claims the records due")
	fs.IntVar(&c.Reconcile.Concurrency, "reconcile-concurrency", reconcile.DefaultConcurrency, fmt.Sprintf("reconcile: lookups in flight at most, `N` from 1 to %d", maxReconcileConcurrency))
	fs.DurationVar(&c.Reconcile.Timeout, "reconcile-timeout", reconcile.DefaultLookupTimeout, "reconcile: bound on one lookup; past it the lookup failed (asked again later)")
	fs.DurationVar(&c.Reconcile.MaxBackoff, "reconcile-max-backoff", reconcile.DefaultMaxBackoff, "reconcile: cap of the wait after unknown or failed lookups (1s doubling, jittered) and of an upstream's retry_after_ms; at least 100ms")
	fs.StringVar(&logLevel, "log-level", "info", "`LEVEL`: debug (one line per request), info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "`FORMAT` of the log on stderr: json or text")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and VCS revision, then exit")
	fs.VisitAll(func(f *flag.Flag) {
		if env := flagEnv[f.Name]; env != "" && !strings.Contains(f.Usage, env) {
			f.Usage += " (env " + env + ")"
		}
	})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: controlplane [FLAGS]\n\nThe idemgate control plane: an HTTP API over Redis. Every flag falls back\nto an environment variable (IDEM_...; see controlplane/README.md).\nIDEM_ENCRYPTION_KEY (base64 of 32 bytes) turns on encryption at rest of\nstored response bodies; IDEM_ENCRYPTION_KEY_PREVIOUS opens bodies sealed\nwith the key before a rotation. IDEM_FINGERPRINT_KEY (base64 of 32 bytes)\nkeys the hash Redis keeps of each fingerprint.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs, &logLevel
}

// parseConfig reads flags, then the environment for flags not given, and
// validates the result. It returns flag.ErrHelp for -h/--help.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	raw, err := readConfig(args, getenv)
	if err != nil {
		return raw.config, err
	}
	return validateConfig(raw)
}

// rawConfig is what the flags and the environment say, checked only for
// what the flag package checks (types): readConfig's answer,
// validateConfig's question.
type rawConfig struct {
	config // as given; what validation resolves is still unset
	// LogLevel is --log-level as given.
	LogLevel string
	// Env holds, by name, the environment variables validation reads
	// beside the flags: the encryption keys, the fingerprint keys and the
	// reconcile credentials.
	Env map[string]string
}

func (r rawConfig) getenv(name string) string { return r.Env[name] }

// readConfig reads flags, then the environment for flags not given, and
// the environment variables that hold keys and credentials.
func readConfig(args []string, getenv func(string) string) (rawConfig, error) {
	var raw rawConfig
	c := &raw.config
	fs, logLevel := newFlagSet(c, io.Discard)
	if err := fs.Parse(args); err != nil {
		// ErrHelp for -h; else the flag package's message, terse but
		// naming the flag.
		return raw, err
	}
	if fs.NArg() > 0 {
		return raw, fmt.Errorf("unexpected argument %q: every setting is a --flag", fs.Arg(0))
	}
	// Before the environment is read: --version answers whatever the
	// configuration (a container's has no token, say).
	if c.showVersion {
		return raw, errVersion
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, env := range flagEnv {
		v := getenv(env)
		if given[name] || v == "" {
			continue
		}
		vals := []string{v}
		if name == "reconcile-url" {
			vals = strings.Fields(v) // URLs hold no spaces
		}
		for _, v := range vals {
			if err := fs.Set(name, v); err != nil {
				if name == "token" || name == "admin-token" {
					return raw, fmt.Errorf("%s: invalid value", env)
				}
				return raw, fmt.Errorf("%s=%q: %v", env, v, err)
			}
		}
	}
	if !given["redis-url"] && getenv(envRedisURL) == "" {
		if addr := getenv(envRedisAddr); addr != "" {
			c.RedisURL = "redis://" + addr
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return raw, fmt.Errorf("%s=%q: want host:port", envRedisAddr, addr)
			}
		}
	}
	raw.LogLevel = *logLevel
	secrets := []string{envEncryptionKey, envEncryptionPrev, c.FingerprintKeyEnv, c.FingerprintKeyEnv + previousSuffix}
	for _, f := range c.ReconcileURLs {
		name, _ := reconcile.ParseTargetFlag(f)
		secrets = append(secrets, reconcile.CredentialEnv(name))
	}
	raw.Env = map[string]string{}
	for _, name := range secrets {
		if v := getenv(name); v != "" && name != "" {
			raw.Env[name] = v
		}
	}
	return raw, nil
}

// validateConfig checks raw and resolves what derives from other settings
// (defaults that depend on others, keys, reconcile targets). It reads
// nothing but raw.
func validateConfig(raw rawConfig) (config, error) {
	c := raw.config
	lvl, err := parseLevel(raw.LogLevel)
	if err != nil {
		return c, err
	}
	c.LogLevel = lvl
	c.WatchPeriod = store.DefaultWatchPeriod
	if err := checkService(&c); err != nil {
		return c, err
	}
	if err := checkLimits(&c); err != nil {
		return c, err
	}
	if c.EncryptionKeys, err = keyPair(raw.getenv, envEncryptionKey, envEncryptionPrev, ""); err != nil {
		return c, err
	}
	if c.FingerprintKeyEnv == "" {
		return c, errors.New("--fingerprint-key-env is empty; want the name of an environment variable")
	}
	if c.FingerprintKeys, err = keyPair(raw.getenv, c.FingerprintKeyEnv, c.FingerprintKeyEnv+previousSuffix, " (the fingerprint key)"); err != nil {
		return c, err
	}
	if err := c.storeOptions().Validate(); err != nil {
		return c, fmt.Errorf("--redis-prefix, --lease or --ttl: %v", err)
	}
	if err := c.validateReconcile(raw.getenv); err != nil {
		return c, err
	}
	minReq := server.MinRequestBytes(c.storeCap())
	switch {
	case c.MaxRequestBytes == 0:
		c.MaxRequestBytes = server.DefaultMaxRequestBytes(c.storeCap())
	case c.MaxRequestBytes < minReq:
		return c, fmt.Errorf("--max-request-bytes %d cannot carry a complete with a %d-byte stored response (base64 in JSON): want at least %d, or 0 for the default",
			c.MaxRequestBytes, c.MaxStoredResponse, minReq)
	}
	return c, nil
}

// checkService checks how the service is reached and reaches Redis: the
// log format, the listen address, the Redis URL, authentication.
func checkService(c *config) error {
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("--log-format %q: want json or text", c.LogFormat)
	}
	if err := validateListen(c.Listen); err != nil {
		return err
	}
	if _, err := store.ParseRedisURL(c.RedisURL); err != nil {
		return fmt.Errorf("--redis-url: %v", err)
	}
	return validateAuth(c)
}

// checkLimits checks the durations, sizes and bounds, and resolves
// --max-inflight's default.
func checkLimits(c *config) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"--lease", c.Lease}, {"--ttl", c.TTL}, {"--op-timeout", c.OpTimeout},
		{"--ready-timeout", c.ReadyTimeout}, {"--shutdown-timeout", c.ShutdownTimeout},
		{"--redis-dial-timeout", c.Redis.DialTimeout}, {"--redis-read-timeout", c.Redis.ReadTimeout},
		{"--redis-write-timeout", c.Redis.WriteTimeout}, {"--redis-pool-timeout", c.Redis.PoolTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s is %v; want a positive duration such as 500ms or 30s", d.name, d.v)
		}
	}
	if c.Lease%time.Millisecond != 0 || c.TTL%time.Millisecond != 0 {
		return errors.New("--lease and --ttl are kept in milliseconds; give whole milliseconds")
	}
	// The fence is a millisecond PEXPIRE; the store bounds it by a whole
	// longest reservation.
	if c.FenceTTL < 0 || c.FenceTTL > 0 && c.FenceTTL < time.Millisecond || c.FenceTTL > 2*api.MaxTTL {
		return fmt.Errorf("--fence-ttl is %v; want 0 (the default) or from 1ms to %v", c.FenceTTL, 2*api.MaxTTL)
	}
	if c.Lease > c.TTL {
		return fmt.Errorf("--lease %v is longer than --ttl %v: a record would expire while held", c.Lease, c.TTL)
	}
	if c.Redis.PoolSize < 0 {
		return fmt.Errorf("--redis-pool-size is %d; want 0 (default) or more", c.Redis.PoolSize)
	}
	switch {
	case c.MaxInFlight == 0:
		c.MaxInFlight = server.DefaultMaxInFlight
	case c.MaxInFlight == 1, c.MaxInFlight < -1:
		return fmt.Errorf("--max-inflight is %d; want 2 or more (a quarter of the slots, at least one, is kept for complete, release and abandon), 0 for the default %d, or -1 for no bound", c.MaxInFlight, server.DefaultMaxInFlight)
	}
	if c.RedisMaxRetries < -1 {
		return fmt.Errorf("--redis-max-retries is %d; want -1 (none), 0 (default) or more", c.RedisMaxRetries)
	}
	if err := validateDurable(*c); err != nil {
		return err
	}
	if c.MaxStoredResponse <= 0 {
		return fmt.Errorf("--max-stored-response is %d; want a positive number of bytes", c.MaxStoredResponse)
	}
	return nil
}

// keyPair reads a key and the one before its rotation (base64 of 32
// bytes each) from the variables name and prevName: none, the key, or
// both. label follows the variable's name in errors, which never show a
// value.
func keyPair(getenv func(string) string, name, prevName, label string) ([][]byte, error) {
	k := getenv(name)
	if k == "" {
		if getenv(prevName) != "" {
			return nil, fmt.Errorf("%s is set but %s is not: set the new key too", prevName, name)
		}
		return nil, nil
	}
	key, err := seal.ParseKey(k)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %v", name, label, err)
	}
	keys := [][]byte{key}
	if p := getenv(prevName); p != "" {
		prev, err := seal.ParseKey(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", prevName, err)
		}
		keys = append(keys, prev)
	}
	return keys, nil
}

// storeCap is the cap the store enforces: with encryption, a sealed body is
// seal.Overhead bytes longer, so the store's cap grows by that much and
// --max-stored-response keeps meaning plaintext bytes.
func (c *config) storeCap() int {
	if len(c.EncryptionKeys) > 0 {
		return c.MaxStoredResponse + seal.Overhead
	}
	return c.MaxStoredResponse
}

func (c *config) storeOptions() store.Options {
	o := store.Options{
		Prefix:            c.RedisPrefix,
		MaxStoredResponse: c.storeCap(),
		DefaultLease:      c.Lease,
		DefaultTTL:        c.TTL,
		FenceTTL:          c.FenceTTL,
		MaxRetries:        c.RedisMaxRetries,
		Durable:           c.Durable,
		ReconcileDelay:    c.Reconcile.Delay,
	}
	if len(c.FingerprintKeys) > 0 {
		o.FingerprintKey = c.FingerprintKeys[0]
		o.PreviousFingerprintKeys = c.FingerprintKeys[1:]
	}
	return o
}

// validateReconcile checks the reconcile settings and resolves the
// targets with their credentials.
func (c *config) validateReconcile(getenv func(string) string) error {
	r := &c.Reconcile
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"--reconcile-delay", r.Delay}, {"--reconcile-interval", r.Interval},
		{"--reconcile-timeout", r.Timeout}, {"--reconcile-max-backoff", r.MaxBackoff},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s is %v; want a positive duration such as 500ms or 30s", d.name, d.v)
		}
	}
	if r.Delay%time.Millisecond != 0 {
		return fmt.Errorf("--reconcile-delay is %v; Redis keeps it in milliseconds: give whole milliseconds", r.Delay)
	}
	if r.MaxBackoff < reconcile.MinRetryAfter {
		return fmt.Errorf("--reconcile-max-backoff is %v; want at least %v", r.MaxBackoff, reconcile.MinRetryAfter)
	}
	if r.Concurrency < 1 || r.Concurrency > maxReconcileConcurrency {
		return fmt.Errorf("--reconcile-concurrency is %d; want 1 to %d", r.Concurrency, maxReconcileConcurrency)
	}
	targets, err := reconcile.ResolveTargets(c.ReconcileURLs, getenv)
	if err != nil {
		return err
	}
	r.Targets = targets
	return nil
}

// validateDurable checks the durable-mode flags: the WAIT must answer
// before the operation's bound and before the Redis read of its reply
// times out (a read timeout would retry the script, an op timeout answer
// 503 without knowing). N > 0 on a Redis without replicas is allowed: the
// operations answer 503 and /readyz says why.
func validateDurable(c config) error {
	d := c.Durable
	if d.Replicas < 0 {
		return fmt.Errorf("--durable-replicas is %d; want 0 (off) or more", d.Replicas)
	}
	if d.Timeout < 0 {
		// Even when off: the store refuses it, under another name.
		return fmt.Errorf("--durable-timeout is %v; want a positive duration", d.Timeout)
	}
	if !d.On() {
		return nil
	}
	if d.Timeout < time.Millisecond || d.Timeout%time.Millisecond != 0 {
		return fmt.Errorf("--durable-timeout is %v; want whole milliseconds, at least 1ms (WAIT 0 would wait forever)", d.Timeout)
	}
	if d.Timeout >= c.OpTimeout {
		return fmt.Errorf("--durable-timeout %v must be less than --op-timeout %v", d.Timeout, c.OpTimeout)
	}
	if d.Timeout >= c.Redis.ReadTimeout {
		return fmt.Errorf("--durable-timeout %v must be less than --redis-read-timeout %v", d.Timeout, c.Redis.ReadTimeout)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

func validateListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:8081 or :8081", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--listen %q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

func validateAuth(c *config) error {
	if c.InsecureNoAuth {
		if c.Token != "" || c.AdminToken != "" {
			return fmt.Errorf("--insecure-no-auth is given but a token is set too (--token/--admin-token or %s/%s): choose one", envToken, envAdminToken)
		}
		return nil
	}
	if c.Token == "" {
		return fmt.Errorf("no token: set %s (or --token), or pass --insecure-no-auth for local development", envToken)
	}
	for _, t := range []struct{ name, v string }{{"token", c.Token}, {"admin token", c.AdminToken}} {
		if t.v == "" {
			continue
		}
		if len(t.v) < minTokenLen {
			return fmt.Errorf("the %s is %d characters; want at least %d (e.g. openssl rand -hex 32)", t.name, len(t.v), minTokenLen)
		}
		if !isToken68(t.v) {
			return fmt.Errorf("the %s has characters a bearer token cannot carry; use %s", t.name, tokenCharsetForErr)
		}
	}
	if c.AdminToken != "" && c.AdminToken == c.Token {
		return errors.New("the admin token equals the token: unset it to let the admin endpoints accept the token, or choose another")
	}
	return nil
}

// isToken68 reports whether s is an RFC 6750 b64token.
func isToken68(s string) bool {
	trailing := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '=':
			trailing = true
		case trailing:
			return false
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9',
			ch == '-', ch == '.', ch == '_', ch == '~', ch == '+', ch == '/':
		default:
			return false
		}
	}
	return s != "" && s[0] != '='
}
