package redistest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// syncTimeout bounds waits for replication to catch up. A sync of a test
// data set takes milliseconds; this only guards against hangs on a
// loaded machine.
const syncTimeout = 30 * time.Second

// Kill ends the process with SIGKILL, giving it no chance to flush or
// close anything, as a crash or an OOM kill would, and returns once it has
// exited. It is a no-op on a server that is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Pause stops the process with SIGSTOP: its sockets stay open but nothing
// answers, as with a long GC-like stall or a frozen VM. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Running reports whether the process was started and has not exited
// (a paused process is running).
func (s *Server) Running() bool {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Relaunch starts the server again on the same port with its original
// arguments plus extra (e.g. "--replicaof", "127.0.0.1", "6390"; a later
// directive wins over an earlier one) and returns once it answers PING. A
// running server is stopped first. The extra arguments replace those of a
// previous Relaunch and are kept by Restart.
func (s *Server) Relaunch(t testing.TB, extra ...string) {
	t.Helper()
	s.Stop()
	s.mu.Lock()
	s.extra = append([]string(nil), extra...)
	s.mu.Unlock()
	s.relaunch(t)
}

// StartReplica starts a server (as Start, with args) that replicates
// master, and returns once its link to the master is up and the initial
// sync is done.
func StartReplica(t testing.TB, master *Server, args ...string) *Server {
	t.Helper()
	all := append(append([]string(nil), args...), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	r := Start(t, all...)
	if err := waitLinkUp(r.Addr(), master.Addr(), syncTimeout); err != nil {
		t.Fatalf("redistest: replica %s of %s: %v", r.Addr(), master.Addr(), err)
	}
	// The master counts the replica for WAIT only once it is online on
	// its side too (its first acknowledgement), a moment after the link.
	if err := waitOnline(master, r.Port(), syncTimeout); err != nil {
		t.Fatalf("redistest: replica %s of %s: %v", r.Addr(), master.Addr(), err)
	}
	return r
}

// waitOnline polls master's INFO replication until it lists the replica
// on port as state=online.
func waitOnline(master *Server, port int, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: master.Addr(), MaxRetries: -1})
	defer c.Close()
	want := ",port=" + strconv.Itoa(port) + ",state=online"
	return poll(timeout, func(ctx context.Context) error {
		info, err := replicationInfo(ctx, c)
		if err != nil {
			return err
		}
		for k, v := range info {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, want) {
				return nil
			}
		}
		return fmt.Errorf("master lists no online replica on port %d: %v", port, info)
	})
}

// waitLinkUp polls the replica's INFO replication until it names master
// and reports master_link_status:up (which Redis sets only once the
// initial sync has been loaded).
func waitLinkUp(replica, master string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: replica, MaxRetries: -1})
	defer c.Close()
	host, port, _ := strings.Cut(master, ":")
	want := map[string]string{
		"role":               "slave",
		"master_host":        host,
		"master_port":        port,
		"master_link_status": "up",
	}
	return poll(timeout, func(ctx context.Context) error {
		info, err := replicationInfo(ctx, c)
		if err != nil {
			return err
		}
		for k, v := range want {
			if info[k] != v {
				return fmt.Errorf("%s=%q, want %q", k, info[k], v)
			}
		}
		return nil
	})
}

// replicationInfo returns the fields of INFO replication.
func replicationInfo(ctx context.Context, c *redis.Client) (map[string]string, error) {
	s, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO replication on %s: %w", c.Options().Addr, err)
	}
	return parseInfo(s), nil
}

// parseInfo splits an INFO reply into its key:value fields.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// poll calls check every 50ms until it returns nil, an error wrapped in
// retryStop, or timeout passes; the error then carries check's last error. Each call gets a context bounded
// by the time left.
func poll(timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(callCtx)
		callCancel()
		if err == nil {
			return nil
		}
		var stop retryStop
		if errors.As(err, &stop) {
			return stop.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitReplicated returns once n replicas have acknowledged everything this
// master had written when it was called: it writes a marker key
// ("redistest:marker") and WAITs for n acknowledgements of it on the same
// connection (the replication stream is ordered, so they cover every
// earlier write of any client). It fails t if that takes longer than
// syncTimeout.
func (s *Server) WaitReplicated(t testing.TB, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, PoolSize: 1, ReadTimeout: 5 * time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	conn := c.Conn()
	defer conn.Close()
	if err := conn.Incr(ctx, "redistest:marker").Err(); err != nil {
		t.Fatalf("redistest: marker write on %s: %v", s.Addr(), err)
	}
	// WAIT again until enough acknowledge: it waits for this connection's
	// last write, the marker, each time.
	var got int
	var err error
	for ctx.Err() == nil {
		if got, err = conn.Do(ctx, "WAIT", n, 1000).Int(); err == nil && got >= n {
			return
		}
	}
	t.Fatalf("redistest: %d of %d replicas of %s acknowledged the marker within %v (last error %v)", got, n, s.Addr(), syncTimeout, err)
}
