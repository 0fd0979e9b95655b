// Command demo-upstream serves the demo payments API of the local stack
// (package e2e/upstream) on -listen, default $IDEM_UPSTREAM_ADDR or
// 127.0.0.1:9000, until SIGINT or SIGTERM. With IDEM_UPSTREAM_RECONCILE_TOKEN
// set, its reconcile lookup (POST /__idempotency/{attempt}) requires that
// bearer credential, the one the control plane sends from
// IDEMGATE_RECONCILE_TOKEN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/idemgate/idemgate/e2e/upstream"
)

func main() {
	def := os.Getenv("IDEM_UPSTREAM_ADDR")
	if def == "" {
		def = "127.0.0.1:9000"
	}
	listen := flag.String("listen", def, "address to serve on (default from IDEM_UPSTREAM_ADDR)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *listen, log); err != nil {
		fmt.Fprintf(os.Stderr, "demo-upstream: %v\n", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The credential comes from the environment, never a flag: flags show in ps.
	h := upstream.New(log, upstream.Options{ReconcileToken: os.Getenv(upstream.TokenEnv)})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info("demo upstream listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// In-flight delayed payments may wait up to MaxDelay; do not hold
	// shutdown that long.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
