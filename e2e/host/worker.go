package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/rand"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// rootContextID is the plugin (root) context of every VM. Stream contexts
// are numbered from 2 up in each VM.
const rootContextID = 1

// worker is one VM: every call into it happens under mu, as every call
// into a VM happens on its one Envoy worker thread.
type worker struct {
	h   *Host
	id  int
	log *slog.Logger
	mod api.Module
	ctx context.Context // carries the worker to the ABI functions

	mu          sync.Mutex
	failed      error // a trap kills the VM, as in Envoy
	closed      bool  // the host closed: no more calls
	nextContext uint32
	active      uint32 // the effective context of the current call
	streams     map[uint32]*stream
	nextCallout uint32
	callout     *calloutAnswer // the callout answer being delivered
	tickPeriod  time.Duration
	tickChanged chan struct{}

	// Linear memory after the last call into the VM, and the most it has
	// been: read by the admin handler without taking mu, which a paused
	// call may hold. Wasm memory only grows (there is no shrink), so the
	// two are equal while the VM lives; peak is kept apart so that a
	// reader never has to know that.
	memBytes, memPeak atomic.Uint64
}

type workerKey struct{}

func workerFrom(ctx context.Context) *worker {
	w, _ := ctx.Value(workerKey{}).(*worker)
	return w
}

// startWorker instantiates the module (a WASI reactor: _initialize runs
// first), creates the root context and runs proxy_on_vm_start and
// proxy_on_configure, as Envoy does when it loads the filter.
func (h *Host) startWorker(ctx context.Context, compiled wazero.CompiledModule, id int) (*worker, error) {
	w := &worker{
		h: h, id: id, log: h.log.With("worker", id),
		nextContext: rootContextID + 1,
		streams:     map[uint32]*stream{},
		tickChanged: make(chan struct{}, 1),
	}
	w.ctx = context.WithValue(context.Background(), workerKey{}, w)
	out := &logWriter{log: w.log}
	mc := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("worker-%d", id)).
		WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithStdout(out).WithStderr(out)
	for k, v := range h.cfg.Env {
		mc = mc.WithEnv(k, v)
	}
	mod, err := h.runtime.InstantiateModule(w.ctx, compiled, mc)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	w.mod = mod
	w.noteMemory()
	for _, name := range []string{"proxy_on_memory_allocate", "proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure"} {
		if mod.ExportedFunction(name) == nil {
			return nil, fmt.Errorf("the module does not export %s: not a proxy-wasm module", name)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.call(w.ctx, "proxy_on_context_create", rootContextID, 0); err != nil {
		return nil, err
	}
	if ok, err := w.call(w.ctx, "proxy_on_vm_start", rootContextID, 0); err != nil || ok == 0 {
		return nil, fmt.Errorf("proxy_on_vm_start failed (%v): see the module's log", err)
	}
	if ok, err := w.call(w.ctx, "proxy_on_configure", rootContextID, uint64(len(h.cfg.PluginConfig))); err != nil || ok == 0 {
		return nil, fmt.Errorf("proxy_on_configure rejected the plugin configuration (%v): see the module's log", err)
	}
	h.ticks.Add(1)
	go w.tickLoop()
	return w, nil
}

// call calls an exported function of the module with the given context
// as the effective one. It must be called with mu held. A missing export
// is a no-op returning 0 (Envoy skips callbacks a module does not
// export); a trap marks the VM failed.
func (w *worker) call(ctx context.Context, name string, args ...uint64) (uint64, error) {
	if w.closed {
		return 0, errHostClosed
	}
	if w.failed != nil {
		return 0, w.failed
	}
	f := w.mod.ExportedFunction(name)
	if f == nil {
		return 0, nil
	}
	if len(args) > 0 && name != "proxy_on_memory_allocate" {
		w.active = uint32(args[0])
	}
	res, err := f.Call(ctx, args...)
	w.noteMemory()
	if err != nil {
		w.failed = fmt.Errorf("wasm VM failed in %s: %w", name, err)
		w.log.Error("the module trapped; this VM serves no more requests (Envoy: the filter fails closed)", "err", err)
		return 0, w.failed
	}
	if len(res) == 0 {
		return 0, nil
	}
	return res[0], nil
}

// noteMemory records the VM's linear memory size (current and peak).
func (w *worker) noteMemory() {
	mem := w.mod.Memory()
	if mem == nil {
		return
	}
	n := uint64(mem.Size())
	w.memBytes.Store(n)
	for {
		p := w.memPeak.Load()
		if n <= p || w.memPeak.CompareAndSwap(p, n) {
			return
		}
	}
}

// tickLoop calls proxy_on_tick at the period the module set.
func (w *worker) tickLoop() {
	defer w.h.ticks.Done()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-w.h.stop:
			if timer != nil {
				timer.Stop()
			}
			return
		case <-w.tickChanged:
		case <-fire:
			w.mu.Lock()
			w.call(w.ctx, "proxy_on_tick", rootContextID)
			w.mu.Unlock()
		}
		w.mu.Lock()
		period := w.tickPeriod
		w.mu.Unlock()
		if timer != nil {
			timer.Stop()
			fire = nil
		}
		if period > 0 {
			timer = time.NewTimer(period)
			fire = timer.C
		}
	}
}

// logWriter sends the module's stdout and stderr to the logger.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.log.Info("module output", "line", string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
