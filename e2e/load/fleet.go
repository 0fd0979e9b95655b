package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"

	"github.com/idemgate/idemgate/e2e/stack"
)

// FleetConfig says what stack to run the burst through.
type FleetConfig struct {
	BinDir   string // build/
	LogDir   string
	Policy   string // e2e/testdata/load.json
	Gateways int    // local hosts sharing the control plane and upstream
	Workers  int    // VMs per gateway (Envoy's --concurrency)
	// CountReserves puts a ReserveCounter between the gateways and the
	// control plane (it costs a hop on every callout).
	CountReserves    bool
	ControlPlaneArgs []string
	GatewayArgs      []string // extra local-host flags, e.g. -route-timeout
	Log              *slog.Logger
}

// Fleet is a running stack with several gateways.
type Fleet struct {
	Stack   *stack.Stack
	Params  Params // the addresses filled in
	Counter *ReserveCounter
	counter *http.Server
}

// StartFleet starts the stack: a private Redis, the control plane, the
// demo upstream and cfg.Gateways local hosts with admin endpoints.
func StartFleet(ctx context.Context, cfg FleetConfig) (*Fleet, error) {
	if cfg.Gateways < 1 {
		return nil, errors.New("load: at least one gateway")
	}
	n := 3 + 2*cfg.Gateways
	addrs := make([]string, n)
	for i := range addrs {
		a, err := stack.FreeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	f := &Fleet{}
	sc := stack.Config{
		BinDir: cfg.BinDir, LogDir: cfg.LogDir, Wasm: filepath.Join(cfg.BinDir, "idempotency.wasm"), Policy: cfg.Policy,
		ControlPlaneAddr: addrs[0], UpstreamAddr: addrs[1], GatewayAddr: addrs[3], GatewayAdminAddr: addrs[4],
		Gateway: stack.GatewayHost, GatewayWorkers: cfg.Workers, LogLevel: "warn",
		ControlPlaneArgs: cfg.ControlPlaneArgs, GatewayArgs: cfg.GatewayArgs, Log: cfg.Log,
	}
	for g := 1; g < cfg.Gateways; g++ {
		sc.ExtraGateways = append(sc.ExtraGateways, stack.GatewayAddrs{Addr: addrs[3+2*g], Admin: addrs[4+2*g]})
	}
	if cfg.CountReserves {
		c, err := NewReserveCounter("http://" + addrs[0])
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", addrs[2])
		if err != nil {
			return nil, fmt.Errorf("reserve counter: %w", err)
		}
		f.Counter, f.counter = c, &http.Server{Handler: c}
		go f.counter.Serve(ln)
		sc.CalloutAddr = addrs[2]
	}
	st, err := stack.Start(ctx, sc)
	if err != nil {
		f.Stop()
		return nil, fmt.Errorf("start the stack (logs in %s): %w", cfg.LogDir, err)
	}
	f.Stack = st
	f.Params.Control, f.Params.Upstream = "http://"+addrs[0], "http://"+addrs[1]
	for g := range cfg.Gateways {
		f.Params.Gateways = append(f.Params.Gateways, "http://"+addrs[3+2*g])
		f.Params.Admins = append(f.Params.Admins, "http://"+addrs[4+2*g])
	}
	return f, nil
}

// Stop stops everything StartFleet started.
func (f *Fleet) Stop() {
	if f.Stack != nil {
		f.Stack.Stop()
	}
	if f.counter != nil {
		f.counter.Close()
	}
}
