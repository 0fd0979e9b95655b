package stack

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// RedisInstallHint says what to install for a real Redis.
const RedisInstallHint = "install redis-server (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis)"

// redisBackend is the Redis the control plane talks to.
type redisBackend interface {
	addr() string
	url() string // the control plane's --redis-url
	kind() string
	logPath() string
	restart(ctx context.Context) error
	stop()
}

// startRedis picks the Redis: the given address, a private redis-server,
// or, without redis-server on PATH (or when Config.EmbeddedRedis asks for
// it), the embedded dev-only store.
func startRedis(ctx context.Context, s *Stack) (redisBackend, error) {
	if u := s.cfg.RedisURL; u != "" {
		return externalURL(u), nil
	}
	if a := s.cfg.RedisAddr; a != "" {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := redisReady(a)(pctx); err != nil {
			return nil, fmt.Errorf("redis at %s does not answer PING: %w", a, err)
		}
		return external(a), nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil || s.cfg.EmbeddedRedis {
		e, err := startEmbedded(s)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return e, nil
	}
	return startRedisServer(ctx, s, bin)
}

// external is a Redis someone else runs.
type external string

func (e external) addr() string { return string(e) }
func (e external) url() string  { return "redis://" + string(e) }
func (e external) kind() string {
	return "redis at " + string(e) + " (given, not started by the stack)"
}
func (e external) logPath() string { return "" }
func (e external) stop()           {}
func (e external) restart(context.Context) error {
	return fmt.Errorf("restart redis at %s: %w", string(e), ErrNotOurs)
}

// externalURL is a Redis someone else runs, named by a control-plane URL
// (a Sentinel or Cluster has no one address to PING).
type externalURL string

func (e externalURL) addr() string { return "" }
func (e externalURL) url() string  { return string(e) }
func (e externalURL) kind() string {
	return "redis at " + redactURL(string(e)) + " (given, not started by the stack)"
}
func (e externalURL) logPath() string { return "" }
func (e externalURL) stop()           {}
func (e externalURL) restart(context.Context) error {
	return fmt.Errorf("restart redis at %s: %w", redactURL(string(e)), ErrNotOurs)
}

// redactURL hides a password in a Redis URL: kind() is printed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// redisServer is a private redis-server on a free loopback port with an
// append-only file, so that a restart keeps the records as a production
// Redis configured per controlplane/README.md would.
type redisServer struct {
	p *proc
	a string
}

func startRedisServer(ctx context.Context, s *Stack, bin string) (*redisServer, error) {
	dir := filepath.Join(s.cfg.LogDir, "redis-data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis data directory: %w", err)
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		port := addr[strings.LastIndexByte(addr, ':')+1:]
		r := &redisServer{a: addr}
		r.p = s.newProc(RoleRedis, bin, []string{
			"--port", port,
			"--bind", "127.0.0.1",
			"--dir", dir,
			"--save", "",
			"--appendonly", "yes",
			"--appendfsync", "everysec",
			"--maxmemory-policy", "noeviction",
		}, nil)
		if last = s.launch(ctx, r.p, redisReady(addr)); last == nil {
			return r, nil
		}
		r.p.stop() // most likely the port was taken meanwhile; try another
	}
	return nil, fmt.Errorf("cannot start redis-server: %w", last)
}

func (r *redisServer) addr() string { return r.a }
func (r *redisServer) url() string  { return "redis://" + r.a }
func (r *redisServer) kind() string {
	return "private redis-server on " + r.a + " (append-only file on)"
}
func (r *redisServer) logPath() string { return r.p.logPath }
func (r *redisServer) stop()           { r.p.stop() }

// restart stops redis-server with SIGTERM (it writes its append-only file
// out) and starts it again on the same port.
func (r *redisServer) restart(ctx context.Context) error {
	r.p.stop()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = r.p.start(); err == nil {
			rctx, cancel := context.WithTimeout(ctx, readyTimeout)
			err = r.p.waitReady(rctx, redisReady(r.a))
			cancel()
			if err == nil {
				return nil
			}
			r.p.stop()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restart redis-server on %s: %w", r.a, err)
}
