// Command idemgate-host serves HTTP through a proxy-wasm module the way
// one Envoy listener with the Wasm HTTP filter does, for development and
// tests where Envoy cannot run. See e2e/host/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/idemgate/idemgate/e2e/host"
)

// pairs is a repeatable NAME=VALUE flag.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	p[k] = v
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "idemgate-host:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("idemgate-host", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	admin := fs.String("admin", "", "address for GET /stats and /ready (Envoy's admin paths); empty: none")
	wasmPath := fs.String("wasm", "build/idempotency.wasm", "the proxy-wasm module")
	configPath := fs.String("config", "", "file holding the plugin configuration, passed to the module verbatim")
	upstream := fs.String("upstream", "127.0.0.1:9000", "host:port requests are proxied to")
	workers := fs.Int("workers", 2, "VMs (Envoy's --concurrency); shared data is shared between them")
	routeTimeout := fs.Duration("route-timeout", host.DefaultRouteTimeout, "upstream request timeout (Envoy's route timeout)")
	bufferLimit := fs.Int("buffer-limit", host.DefaultBufferLimit, "bytes a paused module may buffer (Envoy's per_connection_buffer_limit_bytes)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	routesPath := fs.String("routes", "", "file holding the route table, JSON: [{\"name\": …, \"prefix\": \"/…\", \"metadata\": {\"idemgate\": {\"route\": …}}}]; empty: one unnamed route")
	clusters, env := pairs{}, pairs{}
	fs.Var(clusters, "cluster", "NAME=HOST:PORT, a cluster the module may call out to (repeatable)")
	fs.Var(env, "env", "NAME=VALUE in the VM's environment (Envoy: vm_config.environment_variables; repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *configPath == "" {
		return errors.New("-config is required: the plugin configuration file")
	}
	pluginConfig, err := os.ReadFile(*configPath)
	if err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	var routes []host.Route
	if *routesPath != "" {
		if routes, err = readRoutes(*routesPath); err != nil {
			return err
		}
	}
	wasm, err := os.ReadFile(*wasmPath)
	if err != nil {
		return fmt.Errorf("-wasm: %w (run `make wasm`)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := host.New(ctx, host.Config{
		Wasm: wasm, PluginConfig: pluginConfig, Env: env, Clusters: clusters,
		Upstream: *upstream, Workers: *workers, RouteTimeout: *routeTimeout,
		BufferLimit: *bufferLimit, Logger: log, Routes: routes,
	})
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	var adminSrv *http.Server
	if *admin != "" {
		aln, err := net.Listen("tcp", *admin)
		if err != nil {
			return fmt.Errorf("-admin: %w", err)
		}
		adminSrv = &http.Server{Handler: h.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- adminSrv.Serve(aln) }()
	}
	log.Info("idemgate-host serving", "listen", ln.Addr().String(), "upstream", *upstream, "workers", *workers, "admin", *admin)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if adminSrv != nil {
		adminSrv.Shutdown(sctx)
	}
	return srv.Shutdown(sctx)
}

// readRoutes reads -routes strictly: a typo in a field name must not
// silently leave a route without its name or metadata.
func readRoutes(path string) ([]host.Route, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-routes: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var routes []host.Route
	if err := dec.Decode(&routes); err != nil {
		return nil, fmt.Errorf("-routes %s: %w", path, err)
	}
	return routes, nil
}
