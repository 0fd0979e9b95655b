package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process gets after SIGTERM before SIGKILL. The
// control plane drains in-flight requests on SIGTERM; the demo upstream may
// hold a delayed payment.
const stopGrace = 10 * time.Second

// proc is one child process that can be stopped, killed and started again
// with the same command line (same address).
type proc struct {
	name    string
	bin     string
	args    []string
	env     []string // added to the parent's environment
	logPath string
	dir     string
	// crashed is told of every exit that nobody asked for, before the
	// exit channel closes (so a waitReady that saw the exit can rely on
	// the report having been made). It must not block.
	crashed func(name string, err error)
	// ready says whether a run is serving; set by Stack.launch, used again
	// when the supervisor restarts the process.
	ready func(context.Context) error

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd has been waited for
	stopped bool          // the current run's exit was asked for
}

// start launches the process; it does not wait for readiness.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.stopped = cmd, done, false
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		p.mu.Lock()
		asked, crashed := p.stopped, p.crashed
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		if !asked && crashed != nil {
			if err == nil {
				err = errors.New("exit status 0")
			}
			crashed(p.name, err)
		}
		close(done)
	}()
	return nil
}

// pid is the running process's id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// running tells whether the process is up, and its exit channel.
func (p *proc) running() (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil, p.done
}

// signal sends sig to the running process and waits for it to exit, with
// SIGKILL after grace. Not running is not an error.
func (p *proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd != nil {
		p.stopped = true
	}
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// stop asks the process to finish (SIGTERM), then kills it after stopGrace.
func (p *proc) stop() { p.signal(syscall.SIGTERM, stopGrace) }

// kill ends the process at once (SIGKILL): a crash, as far as peers can tell.
func (p *proc) kill() { p.signal(syscall.SIGKILL, stopGrace) }

// waitReady polls ready until it succeeds, the process exits or ctx ends.
func (p *proc) waitReady(ctx context.Context, ready func(context.Context) error) error {
	_, done := p.running()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready; end of %s:\n%s", p.name, p.logPath, tail(p.logPath, 2048))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v); end of %s:\n%s", p.name, ctx.Err(), last, p.logPath, tail(p.logPath, 2048))
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// tail returns up to n bytes from the end of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(b)
}

func logPath(dir, name string) string { return filepath.Join(dir, name+".log") }
