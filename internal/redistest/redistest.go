// Package redistest starts private redis-server processes for tests: a
// standalone server, replicas, a small Redis Cluster, or a master with
// replicas and sentinels, each on free loopback ports, with no persistence,
// stopped when the test ends. Servers can be killed, paused and relaunched
// to inject faults.
//
// Tests never touch a Redis they did not start (the machine may run one on
// 6379). When redis-server or redis-cli is missing the test fails, it does
// not skip: a skipped integration test reads as a pass.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// startTimeout bounds how long a fresh redis-server may take to answer
	// PING; it starts in milliseconds, so this only guards against hangs.
	startTimeout = 10 * time.Second
	// stopTimeout is how long a SIGTERM gets before SIGKILL.
	stopTimeout = 5 * time.Second
	// portAttempts bounds retries when a port picked as free was taken by
	// someone else before redis-server bound it.
	portAttempts = 5
	installHint  = "apt-get install -y redis-server"
	// UnitEnv is set by make unit, whose tests must need no Redis: a test
	// there that starts a server fails, naming the fix, rather than
	// passing on a machine that happens to have redis-server.
	UnitEnv = "IDEMGATE_UNIT"
)

// Server is one redis-server process owned by a test.
type Server struct {
	t       testing.TB
	bin     string
	port    int
	dir     string
	logPath string
	args    []string // full argument list, port included; reused by Restart
	extra   []string // arguments added by the last Relaunch, kept by Restart

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	client *redis.Client
}

// Start starts a redis-server on a free 127.0.0.1 port with persistence off
// and its working directory in t.TempDir(), plus args (e.g. "--maxmemory",
// "10mb"). It returns once PING answers and stops the server when the test
// ends. It fails the test if redis-server is not installed.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, false, args)
}

func start(t testing.TB, cluster bool, extra []string) *Server {
	t.Helper()
	return startProc(t, cluster, func(port int, dir string) ([]string, error) {
		args := []string{
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			// A master waits 5s by default before a diskless full sync,
			// hoping for more replicas to batch; tests want it at once.
			"--repl-diskless-sync-delay", "0",
		}
		if cluster {
			args = append(args,
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)))
		}
		return append(args, extra...), nil
	})
}

// startProc starts redis-server with the arguments build returns for a free
// port and the server's own directory, retrying on another port when the
// start fails (most likely the port was taken meanwhile).
func startProc(t testing.TB, cluster bool, build func(port int, dir string) ([]string, error)) *Server {
	t.Helper()
	bin := lookPath(t, "redis-server")
	// TempDir first: cleanups run last-in first-out, so the server is
	// stopped before its directory is removed.
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < portAttempts; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{
			t:       t,
			bin:     bin,
			port:    port,
			dir:     dir,
			logPath: filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)),
		}
		if s.args, err = build(port, dir); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if err := s.launch(); err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(func() {
			if t.Failed() {
				s.logOutput()
			}
			s.Stop()
			s.mu.Lock()
			c := s.client
			s.client = nil
			s.mu.Unlock()
			if c != nil {
				_ = c.Close()
			}
		})
		return s
	}
	t.Fatalf("redistest: cannot start redis-server after %d attempts: %v", portAttempts, lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// LogPath is the file that receives the server's output.
func (s *Server) LogPath() string { return s.logPath }

// Client returns a go-redis client for the server, created on first use and
// closed when the test ends. It reconnects by itself after Restart.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{Addr: s.Addr()})
	}
	return s.client
}

// Stop stops the server (SIGTERM, then SIGKILL after a grace period). It is
// safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	// A paused (SIGSTOPped) server handles SIGTERM only once it runs again.
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart stops the server and starts it again on the same port and with
// the same arguments (those of the last Relaunch included), returning once
// it answers PING. With persistence off the data is gone afterwards, and so
// are loaded scripts.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.relaunch(s.t)
}

// relaunch starts the stopped process again on its port, failing t if it
// cannot.
func (s *Server) relaunch(t testing.TB) {
	t.Helper()
	// The port was ours a moment ago; redis-server binds with SO_REUSEADDR,
	// so TIME_WAIT connections do not block it. Retry briefly anyway in
	// case the kernel is slow to let go of the listener.
	var err error
	for attempt := 0; attempt < portAttempts; attempt++ {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.logOutput()
	t.Fatalf("redistest: restart of redis-server on %s: %v", s.Addr(), err)
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	s.mu.Lock()
	args := append(append([]string(nil), s.args...), s.extra...)
	s.mu.Unlock()
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	if err := waitPing(s.Addr(), exited); err != nil {
		s.Stop()
		return fmt.Errorf("redis-server on %s: %w; end of its log:\n%s", s.Addr(), err, s.logTail(2048))
	}
	return nil
}

// logTail returns up to n bytes from the end of the server's log.
func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// logOutput prints the server's log into the test output, for diagnosis.
func (s *Server) logOutput() {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		s.t.Logf("redistest: no log for %s: %v", s.Addr(), err)
		return
	}
	s.t.Logf("redistest: log of redis-server %s:\n%s", s.Addr(), b)
}

// waitPing polls addr with a raw PING until +PONG or the process exits.
func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited before answering PING")
		default:
		}
		if lastErr = ping(addr); lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PING answer within %v: %w", startTimeout, lastErr)
}

func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// freePort returns a port that was free on 127.0.0.1 a moment ago. For a
// cluster node the cluster bus port (port+10000) must be free as well.
func freePort(cluster bool) (int, error) {
	for attempt := 0; attempt < 20; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !cluster {
			_ = l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			_ = l.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair (port, port+10000) found")
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	if os.Getenv(UnitEnv) != "" {
		t.Fatalf("redistest: %s is set: make unit runs only tests that need no Redis, and this one starts %s; leave it to make test (the Makefile's UNIT lists)", UnitEnv, name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("redistest: %s not found on PATH (%v); install it: %s", name, err, installHint)
	}
	return p
}
