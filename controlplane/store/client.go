package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Deployment modes a Redis URL selects.
const (
	ModeStandalone = "standalone"
	ModeCluster    = "cluster"
	ModeSentinel   = "sentinel"
)

// Client defaults. They are chosen for the filter's callout, which waits a
// bounded time (typically 1–2 s) for reserve: a Redis that cannot answer in
// this budget must produce an error the filter can act on (fail open or
// closed) rather than a callout timeout.
const (
	// DefaultDialTimeout: a loopback or in-cluster dial takes well under a
	// millisecond; a second only covers a congested network.
	DefaultDialTimeout = time.Second
	// DefaultReadTimeout and DefaultWriteTimeout: every operation is one
	// short Lua script, answered in well under a millisecond; 500 ms leaves
	// room for one retry inside the callout budget.
	DefaultReadTimeout  = 500 * time.Millisecond
	DefaultWriteTimeout = 500 * time.Millisecond
	// DefaultMaxRetries (Options.MaxRetries): one retry absorbs a pooled
	// connection that died (Redis restarted, failover). Retrying a script
	// whose reply was lost is safe because every script is idempotent for
	// the same arguments: see the package comment, "Retries". The store
	// retries, not go-redis (NewClient turns its retries off), so that
	// every retry is counted.
	DefaultMaxRetries = 1
	// DefaultPoolTimeout: how long an operation waits for a free
	// connection when all of a node's pool is busy, before it fails
	// (redis.ErrPoolTimeout, answered 503). go-redis's default, the read
	// timeout + 1 s, is longer than the operation's own bound, so a
	// saturated pool used to turn into a queue that ended at --op-timeout.
	// A connection is busy for one script's round trip (well under a
	// millisecond on a LAN): 100 ms of waiting means the pool is saturated
	// a hundred times over, and a fast 503 serves the filter better.
	DefaultPoolTimeout = 100 * time.Millisecond
	// dialAttempts: one dial per command attempt. go-redis's default of 5
	// dials 100ms apart turns "connection refused" into half a second of
	// waiting per attempt; the store's retries give a second chance.
	dialAttempts = 1
)

// ClientOptions tunes the Redis client. Zero values take the defaults above.
type ClientOptions struct {
	DialTimeout  time.Duration // default DefaultDialTimeout
	ReadTimeout  time.Duration // default DefaultReadTimeout
	WriteTimeout time.Duration // default DefaultWriteTimeout
	// PoolSize is the number of connections per Redis node; 0 keeps
	// go-redis's default of 10 per GOMAXPROCS.
	PoolSize int
	// PoolTimeout bounds the wait for a free connection of a full pool;
	// default DefaultPoolTimeout.
	PoolTimeout time.Duration
}

func (o ClientOptions) withDefaults() (ClientOptions, error) {
	if o.DialTimeout < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0 || o.PoolTimeout < 0 {
		return o, errors.New("redis client: timeouts must not be negative")
	}
	if o.PoolSize < 0 {
		return o, errors.New("redis client: pool size must not be negative")
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PoolTimeout == 0 {
		o.PoolTimeout = DefaultPoolTimeout
	}
	return o, nil
}

// Target is what a Redis URL describes. String() redacts the passwords, so
// a Target can be logged.
type Target struct {
	Mode       string   // ModeStandalone, ModeCluster or ModeSentinel
	Addrs      []string // host:port; sentinels' addresses in ModeSentinel
	Username   string
	Password   string
	DB         int
	MasterName string // ModeSentinel only
	TLS        bool
	// Credentials of the sentinels themselves (ModeSentinel only), from the
	// query parameters sentinel_username and sentinel_password; the URL's
	// userinfo is for the Redis master.
	SentinelUsername string
	SentinelPassword string
}

func (t Target) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", t.Mode, strings.Join(t.Addrs, ","))
	if t.MasterName != "" {
		fmt.Fprintf(&b, " master=%s", t.MasterName)
	}
	if t.DB != 0 {
		fmt.Fprintf(&b, " db=%d", t.DB)
	}
	if t.TLS {
		b.WriteString(" tls")
	}
	if t.Username != "" || t.Password != "" {
		fmt.Fprintf(&b, " user=%q password=<redacted>", t.Username)
	}
	return b.String()
}

// ParseRedisURL parses one of
//
//	redis://[user:pass@]host:port[/db]              standalone
//	rediss://[user:pass@]host:port[/db]             standalone over TLS
//	redis-cluster://[user:pass@]host1:port1,host2:port2,…
//	rediss-cluster://…                               Cluster over TLS
//	redis-sentinel://[user:pass@]host1:port1,…/MASTERNAME[/db][?sentinel_username=U&sentinel_password=P]
//	rediss-sentinel://…                              Sentinel over TLS
//
// A missing port means 6379 (26379 for sentinels). User and password may be
// percent-encoded. Errors name the problem but never echo the password.
func ParseRedisURL(raw string) (Target, error) {
	var t Target
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return t, errors.New("redis URL: missing scheme (want redis://, rediss://, redis-cluster:// or redis-sentinel://)")
	}
	defPort := "6379"
	switch strings.ToLower(scheme) {
	case "redis":
		t.Mode = ModeStandalone
	case "rediss":
		t.Mode, t.TLS = ModeStandalone, true
	case "redis-cluster":
		t.Mode = ModeCluster
	case "rediss-cluster":
		t.Mode, t.TLS = ModeCluster, true
	case "redis-sentinel":
		t.Mode, defPort = ModeSentinel, "26379"
	case "rediss-sentinel":
		t.Mode, t.TLS, defPort = ModeSentinel, true, "26379"
	default:
		return t, fmt.Errorf("redis URL: unknown scheme %q (want redis, rediss, redis-cluster, rediss-cluster, redis-sentinel or rediss-sentinel)", scheme)
	}

	// Userinfo ends at the last '@', so an unencoded '@' or '/' in a
	// password still parses.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, hasPass := strings.Cut(rest[:at], ":")
		var err error
		if t.Username, err = url.PathUnescape(user); err != nil {
			return t, errors.New("redis URL: user name is not valid percent-encoding")
		}
		if hasPass {
			if t.Password, err = url.PathUnescape(pass); err != nil {
				return t, errors.New("redis URL: password is not valid percent-encoding")
			}
		}
		rest = rest[at+1:]
	}

	rest, rawQuery, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	if hosts == "" {
		return t, errors.New("redis URL: no host")
	}
	for _, h := range strings.Split(hosts, ",") {
		addr, err := hostPort(h, defPort)
		if err != nil {
			return t, fmt.Errorf("redis URL: %w", err)
		}
		t.Addrs = append(t.Addrs, addr)
	}
	if t.Mode == ModeStandalone && len(t.Addrs) > 1 {
		return t, fmt.Errorf("redis URL: %d hosts in a standalone URL; use redis-cluster:// or redis-sentinel:// for several", len(t.Addrs))
	}

	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	parseDB := func(s string) error {
		db, err := strconv.Atoi(s)
		if err != nil || db < 0 {
			return fmt.Errorf("redis URL: database %q is not a non-negative number", s)
		}
		t.DB = db
		return nil
	}
	switch t.Mode {
	case ModeStandalone:
		if len(segs) > 1 {
			return t, fmt.Errorf("redis URL: path %q: want at most /db", path)
		}
		if len(segs) == 1 {
			if err := parseDB(segs[0]); err != nil {
				return t, err
			}
		}
	case ModeCluster:
		// Redis Cluster has only database 0.
		if len(segs) > 0 {
			return t, fmt.Errorf("redis URL: path %q: a cluster URL takes no path (Redis Cluster has only database 0)", path)
		}
	case ModeSentinel:
		if len(segs) == 0 {
			return t, errors.New("redis URL: sentinel URL lacks the master name: redis-sentinel://host:port/MASTERNAME")
		}
		if len(segs) > 2 {
			return t, fmt.Errorf("redis URL: path %q: want /MASTERNAME[/db]", path)
		}
		name, err := url.PathUnescape(segs[0])
		if err != nil || name == "" {
			return t, fmt.Errorf("redis URL: master name %q is not valid", segs[0])
		}
		t.MasterName = name
		if len(segs) == 2 {
			if err := parseDB(segs[1]); err != nil {
				return t, err
			}
		}
	}

	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return t, errors.New("redis URL: query is not valid")
	}
	for name, vals := range q {
		switch {
		case t.Mode == ModeSentinel && name == "sentinel_username":
			t.SentinelUsername = vals[len(vals)-1]
		case t.Mode == ModeSentinel && name == "sentinel_password":
			t.SentinelPassword = vals[len(vals)-1]
		default:
			return t, fmt.Errorf("redis URL: unknown query parameter %q (timeouts and pool size are set by flags, not in the URL)", name)
		}
	}
	return t, nil
}

// hostPort validates one host[:port] and adds the default port.
func hostPort(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty host in the host list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a bare name, IPv4 or bracketed IPv6.
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defPort
		if strings.Contains(host, ":") && !strings.HasPrefix(h, "[") {
			return "", fmt.Errorf("host %q: write IPv6 addresses in brackets, [::1]:6379", h)
		}
		if strings.ContainsAny(host, "[]") {
			return "", fmt.Errorf("host %q is not valid", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("host %q has no host name", h)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number from 1 to 65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// NewClient builds a go-redis client for a URL as ParseRedisURL accepts it:
// a *redis.Client (standalone), a *redis.ClusterClient (Cluster, even with
// one seed address) or a Sentinel-backed failover *redis.Client. It does
// not connect; call Ping (or Store.Ping) to check reachability.
func NewClient(redisURL string, opt ClientOptions) (redis.UniversalClient, error) {
	t, err := ParseRedisURL(redisURL)
	if err != nil {
		return nil, err
	}
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if t.TLS {
		// ServerName stays empty: go-redis dials with tls.DialWithDialer,
		// which takes it from each dialled host, as Cluster and Sentinel
		// need (they dial hosts learnt at run time).
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// One set of options for the three modes: go-redis's universal client
	// picks Sentinel when a master name is set and Cluster when asked,
	// even with a single seed address.
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            t.Addrs,
		IsClusterMode:    t.Mode == ModeCluster,
		MasterName:       t.MasterName,
		SentinelUsername: t.SentinelUsername,
		SentinelPassword: t.SentinelPassword,
		Username:         t.Username,
		Password:         t.Password,
		DB:               t.DB,
		TLSConfig:        tlsConf,
		DialTimeout:      o.DialTimeout,
		ReadTimeout:      o.ReadTimeout,
		WriteTimeout:     o.WriteTimeout,
		PoolSize:         o.PoolSize,
		PoolTimeout:      o.PoolTimeout,
		// go-redis never retries (-1; it reads 0 as 3): the store does,
		// counting each retry (Options.MaxRetries).
		MaxRetries:            -1,
		DialerRetries:         dialAttempts,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	}), nil
}
