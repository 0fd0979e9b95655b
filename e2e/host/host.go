// Package host is a development and test proxy-wasm host: it serves HTTP,
// runs a proxy-wasm module (build/idempotency.wasm) for every request the
// way one Envoy worker runs an HTTP Wasm filter, performs the module's HTTP
// callouts for real and proxies to one upstream. It exists because Envoy
// cannot run on the machines this project is built on; e2e/host/README.md
// lists every way it differs from Envoy.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
)

// Config configures a Host.
type Config struct {
	// Wasm is the compiled proxy-wasm module.
	Wasm []byte
	// PluginConfig is handed to the module verbatim, as Envoy hands over
	// the filter's `configuration` StringValue.
	PluginConfig []byte
	// Env is the VM's environment (Envoy: vm_config.environment_variables).
	Env map[string]string
	// Clusters maps a cluster name the module may call out to onto a
	// host:port (Envoy: a static cluster with one endpoint).
	Clusters map[string]string
	// Upstream is the host:port every request that the module lets
	// through is proxied to.
	Upstream string
	// Workers is the number of VMs (Envoy: --concurrency); requests are
	// spread over them round robin and shared data is shared between
	// them, as in Envoy. 0 means 1.
	Workers int
	// RouteTimeout bounds the upstream request (Envoy's route timeout,
	// default 15 s); it expires as a 504 local reply.
	RouteTimeout time.Duration
	// StreamIdleTimeout bounds how long a stream may stay paused by the
	// module (Envoy's stream_idle_timeout, default 5 min); it expires as
	// a 408 local reply.
	StreamIdleTimeout time.Duration
	// BufferLimit is the most request or response body a paused module
	// may make the host buffer (Envoy's per_connection_buffer_limit_bytes,
	// default 1 MiB); beyond it the host answers 413 (request) or, as
	// Envoy does mid-response, 500 straight to the client past the module
	// (or a reset when the module had let the headers go).
	BufferLimit int
	// Logger receives the module's logs and the host's own; nil means
	// slog.Default().
	Logger *slog.Logger
	// Routes is the route table (routes.go); empty: every request is
	// routed to Upstream by an unnamed route without metadata. With
	// routes, a request none matches is answered 404 by the "router"
	// after the module saw it, as Envoy's route_not_found.
	Routes []Route
}

// Defaults of Config's zero fields: Envoy's.
const (
	DefaultRouteTimeout      = 15 * time.Second
	DefaultStreamIdleTimeout = 5 * time.Minute
	DefaultBufferLimit       = 1 << 20
)

// Host runs the module in Workers VMs behind an http.Handler.
type Host struct {
	cfg     Config
	log     *slog.Logger
	runtime wazero.Runtime
	workers []*worker
	next    atomic.Uint32

	shared  sharedData
	metrics metrics

	upstream  *http.Client // to the upstream: never replays a request
	callouts  *http.Client // to the clusters
	closeOnce sync.Once
	stop      chan struct{}
	ticks     sync.WaitGroup

	// Callouts in flight: Close cancels them and waits for them, so that
	// nothing calls into a VM once it is closed.
	calloutCtx       context.Context
	cancelCallouts   context.CancelFunc
	calloutWG        sync.WaitGroup
	calloutsInFlight atomic.Int32
	answeredMu       sync.Mutex
	answeredByPath   map[string]int // answers with a status delivered to a root context, by :path (tests)
}

// calloutsAnswered is how many answers with a status were delivered to a
// root context for callouts to path.
func (h *Host) calloutsAnswered(path string) int {
	h.answeredMu.Lock()
	defer h.answeredMu.Unlock()
	return h.answeredByPath[path]
}

// New compiles the module (once per process: compile.go), starts Workers
// VMs and configures the plugin in each. A module that fails to start or
// to configure is an error: Envoy rejects such a filter configuration.
func New(ctx context.Context, cfg Config) (*Host, error) {
	return newWithCache(ctx, cfg, processModules)
}

// newWithCache is New on the given compilation cache.
func newWithCache(ctx context.Context, cfg Config, modules *moduleCache) (*Host, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.RouteTimeout <= 0 {
		cfg.RouteTimeout = DefaultRouteTimeout
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = DefaultBufferLimit
	}
	if cfg.Upstream == "" {
		return nil, errors.New("host: no upstream address")
	}
	if err := checkRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	h := &Host{
		cfg:     cfg,
		log:     cfg.Logger,
		shared:  sharedData{m: map[string]sharedValue{}},
		metrics: metrics{byName: map[string]uint32{}},
		stop:    make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.calloutCtx, h.cancelCallouts = context.WithCancel(context.Background())
	h.upstream = &http.Client{Transport: newTransport(cfg.Workers * 64)}
	h.callouts = &http.Client{Transport: newTransport(cfg.Workers * 64)}

	var err error
	if h.runtime, err = modules.newRuntime(ctx); err != nil {
		return nil, err
	}
	if err := h.instantiateABI(ctx); err != nil {
		h.runtime.Close(ctx)
		return nil, err
	}
	compiled, err := modules.compile(ctx, h.runtime, cfg.Wasm)
	if err != nil {
		h.runtime.Close(ctx)
		return nil, err
	}
	for i := range cfg.Workers {
		w, err := h.startWorker(ctx, compiled, i)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("host: worker %d: %w", i, err)
		}
		h.workers = append(h.workers, w)
	}
	return h, nil
}

// newTransport is an http.Transport that never re-sends a request. Go's
// Transport silently retries a request on a fresh connection when a reused
// one fails, if the request is "replayable": GET-like methods, or any
// method carrying an Idempotency-Key header with a body it can rewind
// (GetBody). The requests this host sends upstream carry bodies without
// GetBody (see forward), so they are never replayable; the transport is
// otherwise an ordinary keep-alive pool.
func newTransport(idlePerHost int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // loopback clusters; never an environment proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        idlePerHost * 2,
		MaxIdleConnsPerHost: idlePerHost,
		IdleConnTimeout:     60 * time.Second, // below the control plane's 5 min idle close
		DisableCompression:  true,             // a proxy passes bytes through
	}
}

// Close stops the ticks, ends the streams paused in the VMs, cancels the
// callouts in flight and closes the VMs. A VM is not called after Close.
func (h *Host) Close() {
	h.closeOnce.Do(func() {
		close(h.stop) // also wakes every paused stream: it is reset
		h.ticks.Wait()
		ctx := context.Background()
		for _, w := range h.workers {
			w.mu.Lock()
			w.call(ctx, "proxy_on_done", rootContextID)
			w.closed = true // no more calls, hence no new callouts
			w.mu.Unlock()
		}
		h.cancelCallouts()
		h.calloutWG.Wait()
		h.runtime.Close(ctx)
		h.upstream.CloseIdleConnections()
		h.callouts.CloseIdleConnections()
	})
}

// ServeHTTP runs one request through a worker's VM.
func (h *Host) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := h.workers[int(h.next.Add(1)-1)%len(h.workers)]
	w.serve(rw, r)
}

// Stats writes the module's metrics like Envoy's admin /stats: custom
// Wasm metrics are prefixed "wasmcustom.", one "name: value" per line,
// sorted; a histogram shows its count and sum.
func (h *Host) Stats() string {
	h.metrics.mu.Lock()
	defer h.metrics.mu.Unlock()
	var lines []string
	for _, m := range h.metrics.list {
		switch m.kind {
		case metricHistogram:
			lines = append(lines, fmt.Sprintf("wasmcustom.%s: P0(nan) count=%d sum=%d", m.name, m.count, m.value))
		default:
			lines = append(lines, fmt.Sprintf("wasmcustom.%s: %d", m.name, m.value))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// Counter returns the value of the counter or gauge name (without the
// "wasmcustom." prefix) and whether it is defined.
func (h *Host) Counter(name string) (uint64, bool) {
	h.metrics.mu.Lock()
	defer h.metrics.mu.Unlock()
	id, ok := h.metrics.byName[name]
	if !ok {
		return 0, false
	}
	return h.metrics.list[id].value, true
}

// VMMemory is one VM's linear memory, in bytes.
type VMMemory struct {
	Worker int    `json:"worker"`
	Bytes  uint64 `json:"bytes"`      // after the last call into the VM
	Peak   uint64 `json:"peak_bytes"` // the most seen; Wasm memory never shrinks, so equal to Bytes
}

// Memory reports every VM's linear memory, by worker. It is what an
// operator would read from the proxy process's resident memory, per VM:
// Envoy exposes no such stat, so this is the host's own.
func (h *Host) Memory() []VMMemory {
	out := make([]VMMemory, len(h.workers))
	for i, w := range h.workers {
		out[i] = VMMemory{Worker: i, Bytes: w.memBytes.Load(), Peak: w.memPeak.Load()}
	}
	return out
}

// memoryStats are Memory as /stats lines: host.vm.<i>.linear_memory_bytes
// and host.vm.<i>.linear_memory_peak_bytes.
func (h *Host) memoryStats() []string {
	var lines []string
	for _, m := range h.Memory() {
		lines = append(lines,
			fmt.Sprintf("host.vm.%d.linear_memory_bytes: %d", m.Worker, m.Bytes),
			fmt.Sprintf("host.vm.%d.linear_memory_peak_bytes: %d", m.Worker, m.Peak))
	}
	return lines
}

// AdminHandler serves GET /stats (Stats, then each VM's linear memory),
// GET /memory (the same memory as JSON) and GET /ready, like Envoy's admin
// interface does for /stats and /ready.
func (h *Host) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("content-type", "text/plain; charset=utf-8")
		fmt.Fprint(rw, h.Stats())
		fmt.Fprintln(rw, strings.Join(h.memoryStats(), "\n"))
	})
	mux.HandleFunc("GET /memory", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("content-type", "application/json")
		json.NewEncoder(rw).Encode(h.Memory())
	})
	mux.HandleFunc("GET /ready", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "LIVE")
	})
	return mux
}
