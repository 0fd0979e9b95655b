package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// vmContext is created once per Wasm VM (one per Envoy worker thread).
type vmContext struct {
	// Embedded for the no-op OnVMStart: the VM configuration is unused.
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{id: contextID}
}

// pluginContext holds one plugin configuration; Envoy creates one per
// filter config in each VM.
type pluginContext struct {
	// Embedded for the no-op OnQueueReady, OnPluginDone and
	// NewTcpContext: this is an HTTP-only filter.
	types.DefaultPluginContext

	id     uint32
	config *policy.Config // set by a successful OnPluginStart
	stats  stats
	// polls are the streams held by on_in_progress wait, grouped by the
	// record they wait for (polls.go); waiting counts them.
	polls   map[pollKey]*pollGroup
	waiting int
	// outbox queues complete, release and abandon until acknowledged
	// (outbox.go); epoch is the edge epoch this VM knows (epoch.go).
	outbox outbox
	epoch  epochState
	tickMS uint32 // the tick period set last (updateTick)
	// held is what this plugin's governed streams hold (held.go).
	held int
}

// OnPluginStart implements types.PluginContext. Returning
// OnPluginStartStatusFailed makes Envoy reject the filter config, which is
// better than serving traffic with a configuration we do not understand.
// The error policy.Parse (or ResolveEnv) returns names the field and the
// reason.
func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	data, err := readPluginConfiguration(pluginConfigurationSize)
	var cfg *policy.Config
	if err == nil {
		cfg, err = policy.Parse(data)
	}
	if err == nil {
		// Scope HMAC keys come from the VM's environment (Envoy's
		// vm_config.environment_variables), not from the route config.
		err = cfg.ResolveEnv(os.LookupEnv)
	}
	if err != nil {
		proxywasm.LogErrorf("idempotency filter: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.config = cfg
	p.stats = defineStats()
	defineMemGauges()
	if cfg.EdgeCacheSlots > 0 {
		for i := range cfg.Routes {
			p.epoch.on = p.epoch.on || cfg.Routes[i].EdgeCacheTTL > 0
		}
	}
	// The first edge epoch poll at once: its answer comes to this plugin
	// context. A host that refuses callouts here gets it from the tick.
	p.firstEpochPoll()
	p.updateTick()
	proxywasm.LogInfof("idempotency filter started: %d route(s), control plane cluster %q", len(cfg.Routes), cfg.ControlPlane.Cluster)
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p, id: contextID}
}

// readPluginConfiguration returns the raw configuration, or nil when none is
// set. Hosts report an empty configuration as NotFound rather than as an
// empty buffer; policy.Parse then refuses it as empty.
func readPluginConfiguration(size int) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	data, err := proxywasm.GetPluginConfiguration()
	if errors.Is(err, types.ErrorStatusNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugin configuration: %w", err)
	}
	return data, nil
}
